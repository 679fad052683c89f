//! Media tracks on a peer connection: a local Opus track that encodes PCM and sends it as RTP,
//! and the reader of a remote audio track that decodes what arrives.

use super::audio::{AudioEncoderConfig, Pcm, OPUS_SAMPLE_RATE};
use super::codec::{OpusDecoder, OpusEncoder};
use crate::error::{Error, Result};
use crate::event::{EventSink, TransportEvent};
use bytes::Bytes;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
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

/// A local audio track: PCM in, Opus over RTP out.
pub struct LocalAudioTrack {
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    config: AudioEncoderConfig,
    encoder: Mutex<OpusEncoder>,
}

impl LocalAudioTrack {
    /// Adds the track to `pc` (the caller renegotiates).
    pub async fn add_to(
        pc: &Arc<dyn RtcPeerConnection>,
        config: AudioEncoderConfig,
    ) -> Result<Self> {
        config.validate()?;
        let encoder = OpusEncoder::new(&config)?;
        let ssrc = new_ssrc();
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "remotemedia".to_owned(),
                    format!("audio-{ssrc:08x}"),
                    "audio".to_owned(),
                    RtpCodecKind::Audio,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec: opus_rtp_codec(),
                        ..Default::default()
                    }],
                ),
            )
            .map_err(|e| Error::webrtc("audio track", e))?,
        );
        let sender = pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| Error::webrtc("add audio track", e))?;
        Ok(Self {
            track,
            sender,
            ssrc,
            config,
            encoder: Mutex::new(encoder),
        })
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
        let pt = self
            .sender
            .get_parameters()
            .await
            .map_err(|e| Error::webrtc("audio sender", e))?
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
            .map(|c| c.payload_type)
            .ok_or_else(|| Error::PeerNotConnected("audio track is not negotiated yet".into()))?;
        self.track
            .sample_writer(self.ssrc, pt)
            .write_sample(&Sample {
                data: packet,
                duration,
                ..Sample::new(Instant::now())
            })
            .await
            .map_err(|e| Error::Encoding(format!("sending audio: {e}")))
    }

    /// Encodes and sends one frame.
    pub async fn send(&self, pcm: Pcm<'_>) -> Result<()> {
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
    /// Arrival time, µs since the Unix epoch (the sender's clock once RTCP sync is wired).
    pub wall_clock_us: u64,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Reads a remote track until it ends; audio is decoded and emitted as `AudioFrame` events.
pub async fn read_remote_track(
    track: Arc<dyn TrackRemote>,
    peer_id: String,
    events: Arc<EventSink>,
) {
    let kind = track.kind().await;
    let mut decoder: Option<(u16, OpusDecoder)> = None;
    while let Some(ev) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(pkt) = ev else {
            if matches!(ev, TrackRemoteEvent::OnEnded) {
                break;
            }
            continue;
        };
        if kind != RtpCodecKind::Audio || pkt.payload.is_empty() {
            continue;
        }
        // Decode at the packet's own channel count (TOC byte, bit 2).
        let channels: u16 = if pkt.payload[0] & 0x04 != 0 { 2 } else { 1 };
        if decoder.as_ref().is_none_or(|(c, _)| *c != channels) {
            match OpusDecoder::new(OPUS_SAMPLE_RATE, channels) {
                Ok(d) => decoder = Some((channels, d)),
                Err(_) => continue,
            }
        }
        let Some((_, dec)) = decoder.as_mut() else {
            continue;
        };
        let samples = match dec.decode_f32(&pkt.payload) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("undecodable audio packet: {e}");
                continue;
            }
        };
        events
            .emit(TransportEvent::AudioFrame {
                peer_id: peer_id.clone(),
                frame: AudioFrame {
                    samples,
                    sample_rate: OPUS_SAMPLE_RATE,
                    channels,
                    rtp_timestamp: pkt.header.timestamp,
                    wall_clock_us: unix_us(),
                },
            })
            .await;
    }
}
