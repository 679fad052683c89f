//! Encoders and decoders behind safe types.
//!
//! - [`OpusEncoder`] / [`OpusDecoder`]: libopus (the `opus` crate builds it from source).
//!   Packet loss: [`OpusDecoder::conceal_f32`] (PLC) and [`OpusDecoder::decode_fec_f32`] (in-band
//!   FEC from the next packet).
//! - [`VideoEncoder`] / [`VideoDecoder`]: VP8 and VP9 profile 0 through libvpx (`env-libvpx-sys`,
//!   raw FFI wrapped here), tuned for real time: one pass, CBR, `VPX_DL_REALTIME`, no lag frames
//!   (`g_lag_in_frames = 0`, so every input frame comes out at once), no frame dropping, VP8
//!   cpu-used ≥ 6, VP9 speed ≥ 7 with row-mt (and tile columns with 2+ threads), keyframes every
//!   `keyframe_interval` frames and on request. With the cargo feature `h264`, also H.264
//!   (OpenH264, constrained baseline, Annex B output).
//!
//! Every type here is `Send` (each owns its codec state; none is shared), and no method panics
//! on bad input: malformed frames and packets are [`Error::InvalidData`], codec failures
//! [`Error::Encoding`] / [`Error::Decoding`].

use super::audio::{
    validate_audio_bitrate, validate_channels, validate_sample_rate, AudioEncoderConfig, Pcm,
    OPUS_SAMPLE_RATE,
};
use super::video::{check_dimensions, validate_video_bitrate, I420Buffer, I420Frame};
use super::VideoCodec;
use super::VideoEncoderConfig;
use crate::error::{Error, Result};

use std::ffi::CStr;
use std::os::raw::{c_int, c_uint, c_ulong};
use std::ptr;
use vpx_sys as vpx;

// ============================================================================================
// Opus
// ============================================================================================

/// The largest Opus packet the encoder writes (enough for 60 ms at 510 kb/s: 3 × 1275 + TOC).
pub const MAX_OPUS_PACKET: usize = 4_000;
/// The longest Opus packet: 120 ms, in samples per channel at 48 kHz.
pub const MAX_OPUS_FRAME_SAMPLES: usize = 5_760;
/// Opus PLC/FEC durations must be a multiple of 2.5 ms (120 samples at 48 kHz).
const OPUS_GRANULE: usize = 120;
/// Expected loss announced to the encoder when FEC is on, until `set_packet_loss_percent`.
const DEFAULT_FEC_LOSS_PERCENT: u8 = 10;

fn opus_channels(channels: u16) -> Result<opus::Channels> {
    validate_channels(channels)?;
    Ok(if channels == 1 {
        opus::Channels::Mono
    } else {
        opus::Channels::Stereo
    })
}

/// Opus encoder for one audio track: 48 kHz, mono or stereo, 10/20/40/60 ms frames.
///
/// Mono uses libopus's VoIP application (speech-tuned), stereo the general audio application,
/// as browsers do. With `fec` on, the encoder stays in SILK/hybrid mode (where in-band FEC
/// lives) and announces 10 % expected loss until [`set_packet_loss_percent`](Self::set_packet_loss_percent).
pub struct OpusEncoder {
    enc: opus::Encoder,
    config: AudioEncoderConfig,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .finish()
    }
}

impl OpusEncoder {
    /// Validates `config` and creates the encoder.
    pub fn new(config: &AudioEncoderConfig) -> Result<Self> {
        config.validate()?;
        let app = if config.channels == 1 {
            opus::Application::Voip
        } else {
            opus::Application::Audio
        };
        let ctx = |e: opus::Error| Error::Encoding(format!("opus encoder: {e}"));
        let mut enc = opus::Encoder::new(config.sample_rate, opus_channels(config.channels)?, app)
            .map_err(ctx)?;
        enc.set_bitrate(opus::Bitrate::Bits(config.bitrate as i32))
            .map_err(ctx)?;
        enc.set_complexity(config.complexity as i32).map_err(ctx)?;
        enc.set_vbr(true).map_err(ctx)?;
        enc.set_inband_fec(config.fec).map_err(ctx)?;
        enc.set_packet_loss_perc(if config.fec {
            DEFAULT_FEC_LOSS_PERCENT as i32
        } else {
            0
        })
        .map_err(ctx)?;
        enc.set_dtx(config.dtx).map_err(ctx)?;
        Ok(Self {
            enc,
            config: *config,
            scratch: vec![0; MAX_OPUS_PACKET],
        })
    }

    pub fn config(&self) -> &AudioEncoderConfig {
        &self.config
    }

    /// Encodes one frame of interleaved `f32` samples (nominally in `[-1, 1]`) into a packet.
    /// The length must be 10/20/40/60 ms (see [`AudioEncoderConfig::frame_duration`]); NaN or
    /// infinite samples are [`Error::InvalidData`]. With DTX on, silence gives packets of at
    /// most 2 bytes, which need not be sent.
    pub fn encode_f32(&mut self, pcm: &[f32]) -> Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.scratch);
        let r = self
            .encode_f32_into(pcm, &mut out)
            .map(|n| out[..n].to_vec());
        self.scratch = out;
        r
    }

    /// Like [`encode_f32`](Self::encode_f32) for `i16` samples.
    pub fn encode_i16(&mut self, pcm: &[i16]) -> Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.scratch);
        let r = self
            .encode_i16_into(pcm, &mut out)
            .map(|n| out[..n].to_vec());
        self.scratch = out;
        r
    }

    /// Either sample type.
    pub fn encode(&mut self, pcm: Pcm<'_>) -> Result<Vec<u8>> {
        match pcm {
            Pcm::F32(s) => self.encode_f32(s),
            Pcm::I16(s) => self.encode_i16(s),
        }
    }

    /// Encodes into `out` (at least [`MAX_OPUS_PACKET`] bytes is always enough) and returns the
    /// packet's length. No allocation.
    pub fn encode_f32_into(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize> {
        self.config.frame_duration(pcm.len())?;
        if let Some(i) = pcm.iter().position(|s| !s.is_finite()) {
            return Err(Error::InvalidData(format!(
                "audio sample {i} is not a finite number ({})",
                pcm[i]
            )));
        }
        self.enc
            .encode_float(pcm, out)
            .map_err(|e| Error::Encoding(format!("opus encode: {e}")))
    }

    /// Like [`encode_f32_into`](Self::encode_f32_into) for `i16` samples.
    pub fn encode_i16_into(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize> {
        self.config.frame_duration(pcm.len())?;
        self.enc
            .encode(pcm, out)
            .map_err(|e| Error::Encoding(format!("opus encode: {e}")))
    }

    /// Changes the target bitrate (6 000–510 000 bits/s) from the next frame on.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        validate_audio_bitrate(bitrate)?;
        self.enc
            .set_bitrate(opus::Bitrate::Bits(bitrate as i32))
            .map_err(|e| Error::Encoding(format!("opus set bitrate: {e}")))?;
        self.config.bitrate = bitrate;
        Ok(())
    }

    /// The packet loss the encoder plans for (0–100 %), e.g. from RTCP receiver reports. With
    /// FEC on, a higher value makes the redundant copy stronger (default 10 %).
    pub fn set_packet_loss_percent(&mut self, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(Error::InvalidConfig(format!(
                "packet loss must be 0..=100 %, got {percent}"
            )));
        }
        self.enc
            .set_packet_loss_perc(percent as i32)
            .map_err(|e| Error::Encoding(format!("opus set packet loss: {e}")))
    }

    /// Turns in-band FEC on or off at run time (turning it on with no expected loss set
    /// announces 10 %, without which libopus writes no FEC data).
    pub fn set_fec(&mut self, fec: bool) -> Result<()> {
        let err = |e: opus::Error| Error::Encoding(format!("opus set fec: {e}"));
        self.enc.set_inband_fec(fec).map_err(err)?;
        if fec && self.enc.get_packet_loss_perc().map_err(err)? == 0 {
            self.enc
                .set_packet_loss_perc(DEFAULT_FEC_LOSS_PERCENT as i32)
                .map_err(err)?;
        }
        self.config.fec = fec;
        Ok(())
    }

    /// Turns DTX on or off at run time.
    pub fn set_dtx(&mut self, dtx: bool) -> Result<()> {
        self.enc
            .set_dtx(dtx)
            .map_err(|e| Error::Encoding(format!("opus set dtx: {e}")))?;
        self.config.dtx = dtx;
        Ok(())
    }
}

/// A sample type the Opus decoder writes.
trait OpusSample: Copy + Default {
    fn decode(
        dec: &mut opus::Decoder,
        input: &[u8],
        out: &mut [Self],
        fec: bool,
    ) -> std::result::Result<usize, opus::Error>;
}

impl OpusSample for f32 {
    fn decode(
        dec: &mut opus::Decoder,
        input: &[u8],
        out: &mut [f32],
        fec: bool,
    ) -> std::result::Result<usize, opus::Error> {
        dec.decode_float(input, out, fec)
    }
}

impl OpusSample for i16 {
    fn decode(
        dec: &mut opus::Decoder,
        input: &[u8],
        out: &mut [i16],
        fec: bool,
    ) -> std::result::Result<usize, opus::Error> {
        dec.decode(input, out, fec)
    }
}

/// Opus decoder for one remote audio track; output is interleaved 48 kHz PCM with the
/// decoder's channel count (a mono stream decoded as stereo is duplicated, and vice versa mixed).
pub struct OpusDecoder {
    dec: opus::Decoder,
    channels: u16,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .finish()
    }
}

impl OpusDecoder {
    /// A decoder writing `channels` (1 or 2) channels at `sample_rate` (48 000).
    pub fn new(sample_rate: u32, channels: u16) -> Result<Self> {
        validate_sample_rate(sample_rate)?;
        let dec = opus::Decoder::new(sample_rate, opus_channels(channels)?)
            .map_err(|e| Error::Decoding(format!("opus decoder: {e}")))?;
        Ok(Self { dec, channels })
    }

    pub fn channels(&self) -> u16 {
        self.channels
    }

    pub fn sample_rate(&self) -> u32 {
        OPUS_SAMPLE_RATE
    }

    /// Samples per channel a packet decodes to (at 48 kHz), without decoding it.
    pub fn packet_samples(packet: &[u8]) -> Result<usize> {
        if packet.is_empty() {
            return Err(Error::InvalidData("empty Opus packet".into()));
        }
        opus::packet::get_nb_samples(packet, OPUS_SAMPLE_RATE)
            .map_err(|e| Error::Decoding(format!("opus packet: {e}")))
    }

    fn run<T: OpusSample>(
        &mut self,
        input: &[u8],
        samples_per_channel: usize,
        fec: bool,
    ) -> Result<Vec<T>> {
        let ch = self.channels as usize;
        let mut out = vec![T::default(); samples_per_channel * ch];
        let n = T::decode(&mut self.dec, input, &mut out, fec)
            .map_err(|e| Error::Decoding(format!("opus decode: {e}")))?;
        out.truncate(n * ch);
        Ok(out)
    }

    fn check_packet(packet: &[u8]) -> Result<()> {
        if packet.is_empty() {
            return Err(Error::InvalidData(
                "empty Opus packet (for a lost packet use conceal_* or decode_fec_*)".into(),
            ));
        }
        Ok(())
    }

    fn check_lost_duration(samples_per_channel: usize) -> Result<()> {
        if samples_per_channel == 0
            || !samples_per_channel.is_multiple_of(OPUS_GRANULE)
            || samples_per_channel > MAX_OPUS_FRAME_SAMPLES
        {
            return Err(Error::InvalidData(format!(
                "a lost Opus frame must last a multiple of 2.5 ms up to 120 ms \
                 (120..=5760 samples per channel, in steps of 120), got {samples_per_channel}"
            )));
        }
        Ok(())
    }

    /// Decodes a packet into interleaved `f32` samples. An empty packet is
    /// [`Error::InvalidData`]; a malformed one is [`Error::Decoding`].
    pub fn decode_f32(&mut self, packet: &[u8]) -> Result<Vec<f32>> {
        Self::check_packet(packet)?;
        self.run(packet, MAX_OPUS_FRAME_SAMPLES, false)
    }

    /// Like [`decode_f32`](Self::decode_f32) for `i16` samples.
    pub fn decode_i16(&mut self, packet: &[u8]) -> Result<Vec<i16>> {
        Self::check_packet(packet)?;
        self.run(packet, MAX_OPUS_FRAME_SAMPLES, false)
    }

    /// Decodes into `out` (interleaved; `MAX_OPUS_FRAME_SAMPLES * channels` is always enough)
    /// and returns the samples per channel written. No allocation.
    pub fn decode_f32_into(&mut self, packet: &[u8], out: &mut [f32]) -> Result<usize> {
        Self::check_packet(packet)?;
        self.dec
            .decode_float(packet, out, false)
            .map_err(|e| Error::Decoding(format!("opus decode: {e}")))
    }

    /// Packet loss concealment: synthesizes `samples_per_channel` samples (a multiple of 120,
    /// i.e. 2.5 ms, up to 5760) in place of a lost packet, continuing the previous audio.
    pub fn conceal_f32(&mut self, samples_per_channel: usize) -> Result<Vec<f32>> {
        Self::check_lost_duration(samples_per_channel)?;
        self.run(&[], samples_per_channel, false)
    }

    /// Like [`conceal_f32`](Self::conceal_f32) for `i16` samples.
    pub fn conceal_i16(&mut self, samples_per_channel: usize) -> Result<Vec<i16>> {
        Self::check_lost_duration(samples_per_channel)?;
        self.run(&[], samples_per_channel, false)
    }

    /// Recovers a lost packet from the FEC data in the packet after it (`next_packet`):
    /// `samples_per_channel` is the lost packet's duration. If `next_packet` carries no FEC data
    /// (the sender had FEC off, or used CELT-only mode) libopus falls back to concealment. Decode
    /// `next_packet` itself normally afterwards.
    pub fn decode_fec_f32(
        &mut self,
        next_packet: &[u8],
        samples_per_channel: usize,
    ) -> Result<Vec<f32>> {
        Self::check_packet(next_packet)?;
        Self::check_lost_duration(samples_per_channel)?;
        self.run(next_packet, samples_per_channel, true)
    }

    /// Like [`decode_fec_f32`](Self::decode_fec_f32) for `i16` samples.
    pub fn decode_fec_i16(
        &mut self,
        next_packet: &[u8],
        samples_per_channel: usize,
    ) -> Result<Vec<i16>> {
        Self::check_packet(next_packet)?;
        Self::check_lost_duration(samples_per_channel)?;
        self.run(next_packet, samples_per_channel, true)
    }

    /// Back to the state of a new decoder (e.g. after a long gap or an SSRC change).
    pub fn reset(&mut self) -> Result<()> {
        self.dec
            .reset_state()
            .map_err(|e| Error::Decoding(format!("opus reset: {e}")))
    }
}

// ============================================================================================
// libvpx helpers
// ============================================================================================

fn cstr(p: *const std::os::raw::c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: libvpx returns NUL-terminated static or context-owned strings.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// "what: libvpx's error string (detail)".
fn vpx_message(ctx: *mut vpx::vpx_codec_ctx_t, what: &str, err: vpx::vpx_codec_err_t) -> String {
    // SAFETY: vpx_codec_err_to_string accepts any error value; error_detail reads the context's
    // own detail pointer (or returns NULL) and tolerates an uninitialized (zeroed) context.
    let text = cstr(unsafe { vpx::vpx_codec_err_to_string(err) }).unwrap_or_default();
    let detail = if ctx.is_null() {
        None
    } else {
        cstr(unsafe { vpx::vpx_codec_error_detail(ctx) })
    };
    match detail {
        Some(d) if !d.is_empty() => format!("{what}: {text} ({d})"),
        _ => format!("{what}: {text}"),
    }
}

/// An owned libvpx codec context. The context and (for encoders) its configuration live on the
/// heap: libvpx keeps pointers to both.
struct VpxContext {
    ctx: Box<vpx::vpx_codec_ctx_t>,
}

impl VpxContext {
    fn zeroed() -> Self {
        // SAFETY: vpx_codec_ctx_t is plain C data (pointers, integers, an error enum whose
        // zero value is VPX_CODEC_OK); all-zero is its documented "not initialized" state.
        Self {
            ctx: Box::new(unsafe { std::mem::zeroed() }),
        }
    }

    fn ptr(&mut self) -> *mut vpx::vpx_codec_ctx_t {
        &mut *self.ctx
    }

    fn is_initialized(&self) -> bool {
        !self.ctx.priv_.is_null()
    }

    /// Sets an integer control; errors name the control.
    fn control(&mut self, id: c_int, value: c_int, name: &str) -> Result<()> {
        // SAFETY: the context is initialized; every control used here takes an int (or
        // unsigned int, same size and passing convention) by value.
        let err = unsafe { vpx::vpx_codec_control_(self.ptr(), id, value) };
        if err == vpx::vpx_codec_err_t::VPX_CODEC_OK {
            Ok(())
        } else {
            Err(Error::Encoding(vpx_message(self.ptr(), name, err)))
        }
    }
}

impl Drop for VpxContext {
    fn drop(&mut self) {
        if self.is_initialized() {
            // SAFETY: initialized by vpx_codec_{enc,dec}_init_ver and destroyed once, here.
            unsafe { vpx::vpx_codec_destroy(self.ptr()) };
        }
    }
}

fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Encoder threads by resolution: 1 below 640x360, 2 below 1280x720, else 4; at most half the
/// cores (so 1 on a 2-core machine).
///
/// - VP8's row threads synchronize by spinning, which turns into 100+ ms stalls when the cores
///   are busy with other work (measured here: p95 of a 720p encode 5 ms alone, 100-350 ms with
///   2 threads next to two busy processes on 2 cores).
/// - VP9's row-mt workers block instead, but on few cores a second thread buys little latency
///   for more CPU. VP9 720p at speed 9, 2 threads against 1, 10 paired runs on 2 cores (see
///   `VP9_SPEED_HD`): encode CPU per frame -2 % to +34 % (median +12 %), 18-34 context switches
///   per frame instead of 1-2 (178 with a 2-thread decoder as well). The encoder shares the
///   cores with the decoder of the other direction and with every other peer, so half the
///   cores is the budget for one encoder.
fn default_threads(width: u32, height: u32) -> u32 {
    let pixels = width as u64 * height as u64;
    let wanted = if pixels >= 1280 * 720 {
        4
    } else if pixels >= 640 * 360 {
        2
    } else {
        1
    };
    wanted.min(cores() / 2).max(1)
}

// ============================================================================================
// Video encoder
// ============================================================================================

/// Default VP8 speed at 1280x720 and above (pinned: cpu-used = -14).
///
/// libvpx's real-time VP8 speeds change in steps: above 6 more modes are skipped per
/// macroblock (a little more per speed), above 8 motion search stops at half-pel, at 14 and
/// above the frames use the simple loop filter (cheaper in the encoder and in every decoder;
/// it filters luma edges only, so blocking on real camera content at low bitrates is smoothed
/// less), at 15 and above motion search is full-pel only (libvpx's comment: "a big hit on
/// quality. Last resort"). 14 is the fastest speed that keeps sub-pixel motion.
///
/// Measured for 1280x720 at 2 Mb/s, 30 fps, a keyframe every 60 frames, on a 2-core machine
/// that other work shared, so absolute times moved by up to 1.5x between runs and only paired
/// numbers are compared: the speeds encode and decode the same frames in one process, round
/// robin, 150-300 frames, CPU time from CLOCK_PROCESS_CPUTIME_ID around each call. Patterns:
/// the media bench's (scrolling luma ramp, moving box) and the noisier
/// `I420Buffer::test_pattern`. Encode + decode CPU per frame relative to speed 8 (8 runs, 6
/// of them paired, 2 back to back in separate processes):
/// speed 12 0.83-1.01 (on the bench pattern mostly no gain); speed 14 0.75-0.93 (median 0.80:
/// encode 0.70-0.94, decode 0.83-0.89); speed 16 0.72-0.88. Luma PSNR, speed 14 against 8:
/// average +0.7 dB on the bench pattern (42.2-42.8 against 41.4-42.0), -0.05 dB on the test
/// pattern (39.33 against 39.37-39.41); the worst frame -0.57 dB (bench) and -0.07 dB (test).
/// Encode wall p50 went down with the CPU (7.3-11.4 ms against 8.5-15.3 ms on the busy
/// machine). The send + receive bench measured 31-33 % of a core per direction, about 26 of
/// it in the codecs; times 0.80 that is about 27 % (25-30 % over the measured range).
const VP8_SPEED_HD: i32 = 14;

/// Default VP9 speed at 1280x720 and above (cpu-used 9, the fastest real-time speed of
/// libvpx 1.12), with one encoder thread on 2 cores (see `default_threads`; then no tile
/// columns) and one decoder thread.
///
/// Measured as for `VP8_SPEED_HD` (paired, 1280x720, 2 Mb/s), against the old defaults (speed
/// 8, 2 encoder threads with row-mt and 2 tile columns, 2 decoder threads), encode + decode
/// CPU per frame: speed 9 with 1 encoder and 1 decoder thread 0.55-0.87 (median 0.63, 10 runs;
/// 0.77 on the noisy test pattern); speed 9 with 2 encoder threads 0.60-0.82 (one disturbed
/// run 1.05). Speed 9 on one thread encodes in about the wall time speed 8 took on two (p50
/// -45 % to +12 %, p95 -36 % to +18 % across runs; on a busy machine the second thread often
/// waits for a core), so send latency stays where it was or drops. Luma PSNR: average +2.5 dB
/// on the bench pattern (54.7-55.9 against 52.2-52.7), -0.35 to -0.45 dB on the test pattern
/// (39.09-39.19 against 39.54), its worst frame in 300 36.96 against 38.98 dB. Decoding with
/// 1 thread instead of 2: 8-15 % less decode CPU, 1-2 context switches per frame instead of
/// 30-36, about the same wall time at 720p. The bench measured 54-57 % of a core per
/// direction, about 50 of it in the codecs: times 0.63 that is about 37 % (33-45 %), better but
/// still above the 30 % goal.
///
/// Not changed: aq-mode 3 (cyclic refresh; aq-mode 0 saved no measurable CPU), the minimum
/// quantizer (a higher one saved CPU only where the picture was near-lossless already).
/// Memory: the VP9 encoder allocates about 59 MB at 720p with 1 thread (13 400 blocks; 48.7 MB
/// of it in blocks of 128 KB and more), 44.5 MB of it one zero-filled token buffer that libvpx
/// 1.12 sizes by the frame at init (one `vpx_calloc` in `alloc_compressor_data`); no setting
/// changes it. With libvpx's own allocator, which clears such blocks with `memset`, all of it
/// was resident (RSS 81 MB). With ours (`super::vpx_mem`) only the pages libvpx touches are.
const VP9_SPEED_HD: i32 = 9;

/// Fine-tuning of a [`VideoEncoder`]; `None` fields keep the defaults, which are what the
/// media path uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoEncoderTuning {
    /// libvpx speed: VP8 6..=16 (default `VP8_SPEED_HD` = 14 at 720p and above, 6 below),
    /// VP9 7..=9 (default `VP9_SPEED_HD` = 9 at 720p and above, 7 below). Higher = faster,
    /// lower quality. VP9 gets it as cpu-used; VP8 as cpu-used = -speed, which in real-time
    /// mode pins the speed (a positive value would make VP8 pick its own speed from measured
    /// encode times, as a CPU budget).
    /// Ignored by H.264.
    pub speed: Option<i32>,
    /// Encoder threads (default: 1 below 640x360, 2 below 1280x720, else 4; capped at half the
    /// machine's cores, so 1 on 2 cores; H.264: 1).
    pub threads: Option<u32>,
    /// Error-resilient bitstream (default: on for VP8, whose entropy contexts then do not
    /// depend on earlier frames; off for VP9, where libvpx's error-resilient mode is meant
    /// for SVC and costs much compression). Ignored by H.264.
    pub error_resilient: Option<bool>,
}

/// One encoded video frame. `data` is a complete VP8/VP9 frame (an Annex B access unit for
/// H.264), ready to be packetized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideoFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// The timestamp passed to [`VideoEncoder::encode`].
    pub timestamp_us: i64,
}

enum EncoderBackend {
    Vpx(VpxEncoder),
    #[cfg(feature = "h264")]
    H264(Box<h264::H264Encoder>),
}

/// A real-time video encoder for one outgoing track: VP8, VP9 (profile 0) or, with the
/// `h264` feature, H.264. Takes [`I420Frame`]s of the configured size.
pub struct VideoEncoder {
    codec: VideoCodec,
    config: VideoEncoderConfig,
    backend: EncoderBackend,
    force_keyframe: bool,
    frames_since_keyframe: u32,
    first_timestamp_us: Option<i64>,
    last_pts: Option<i64>,
}

impl std::fmt::Debug for VideoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEncoder")
            .field("codec", &self.codec)
            .field("config", &self.config)
            .finish()
    }
}

impl VideoEncoder {
    /// Validates `config` and creates an encoder with the default tuning.
    pub fn new(codec: VideoCodec, config: &VideoEncoderConfig) -> Result<Self> {
        Self::with_tuning(codec, config, &VideoEncoderTuning::default())
    }

    pub fn with_tuning(
        codec: VideoCodec,
        config: &VideoEncoderConfig,
        tuning: &VideoEncoderTuning,
    ) -> Result<Self> {
        config.validate()?;
        if let Some(t) = tuning.threads {
            if t == 0 || t > 64 {
                return Err(Error::InvalidConfig(format!(
                    "encoder threads must be 1..=64, got {t}"
                )));
            }
        }
        let backend = match codec {
            VideoCodec::Vp8 | VideoCodec::Vp9 => {
                EncoderBackend::Vpx(VpxEncoder::new(codec, config, tuning)?)
            }
            #[cfg(feature = "h264")]
            VideoCodec::H264 => {
                EncoderBackend::H264(Box::new(h264::H264Encoder::new(config, tuning)?))
            }
            #[cfg(not(feature = "h264"))]
            VideoCodec::H264 => {
                return Err(Error::InvalidConfig(
                    "videoCodec 'h264' is not built in: build with the cargo feature `h264`".into(),
                ))
            }
        };
        Ok(Self {
            codec,
            config: *config,
            backend,
            force_keyframe: false,
            frames_since_keyframe: 0,
            first_timestamp_us: None,
            last_pts: None,
        })
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    pub fn config(&self) -> &VideoEncoderConfig {
        &self.config
    }

    /// Makes the next encoded frame a keyframe (answer to PLI/FIR).
    pub fn force_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Changes the target bitrate (10 000–100 000 000 bits/s) from the next frame on.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        validate_video_bitrate(bitrate)?;
        match &mut self.backend {
            EncoderBackend::Vpx(e) => e.set_bitrate(bitrate)?,
            #[cfg(feature = "h264")]
            EncoderBackend::H264(e) => e.set_bitrate(bitrate)?,
        }
        self.config.bitrate = bitrate;
        Ok(())
    }

    /// Encodes one frame. `timestamp_us` is the capture time in microseconds (any origin);
    /// timestamps that do not increase are replaced by the previous one plus one frame
    /// interval, so the rate control always sees a sane clock.
    ///
    /// Returns the encoded frames, in practice exactly one (real-time settings: no lag, no
    /// frame dropping); an empty vector is possible in principle and means "nothing to send".
    /// A frame of another size than the configured one is [`Error::InvalidData`] (create a
    /// new encoder to change resolution).
    pub fn encode(
        &mut self,
        frame: &I420Frame<'_>,
        timestamp_us: i64,
    ) -> Result<Vec<EncodedVideoFrame>> {
        if frame.width() != self.config.width || frame.height() != self.config.height {
            return Err(Error::InvalidData(format!(
                "frame is {}x{}, the {:?} encoder was configured for {}x{}",
                frame.width(),
                frame.height(),
                self.codec,
                self.config.width,
                self.config.height
            )));
        }
        let frame_us = (1_000_000 / self.config.framerate as i64).max(1);
        let first = *self.first_timestamp_us.get_or_insert(timestamp_us);
        let mut pts = timestamp_us.saturating_sub(first);
        if let Some(last) = self.last_pts {
            if pts <= last {
                pts = last.saturating_add(frame_us);
            }
        }
        let interval = self.config.keyframe_interval;
        let force = self.force_keyframe
            || self.last_pts.is_none()
            || (interval > 0 && self.frames_since_keyframe >= interval);
        let out = match &mut self.backend {
            EncoderBackend::Vpx(e) => e.encode(frame, pts, frame_us, force)?,
            #[cfg(feature = "h264")]
            EncoderBackend::H264(e) => e.encode(frame, pts, force)?,
        };
        self.last_pts = Some(pts);
        self.force_keyframe = false;
        let mut frames = Vec::with_capacity(out.len());
        for (data, keyframe) in out {
            if keyframe {
                self.frames_since_keyframe = 0;
            }
            frames.push(EncodedVideoFrame {
                data,
                keyframe,
                timestamp_us,
            });
        }
        self.frames_since_keyframe = self.frames_since_keyframe.saturating_add(1);
        Ok(frames)
    }
}

/// libvpx encoder state. `cfg` is boxed because libvpx keeps a pointer to it.
struct VpxEncoder {
    ctx: VpxContext,
    cfg: Box<vpx::vpx_codec_enc_cfg_t>,
    codec: VideoCodec,
}

// SAFETY: a libvpx context has no thread affinity; it is only used through `&mut self`, one
// thread at a time. Its worker threads are internal to libvpx.
unsafe impl Send for VpxEncoder {}

impl VpxEncoder {
    fn new(
        codec: VideoCodec,
        config: &VideoEncoderConfig,
        tuning: &VideoEncoderTuning,
    ) -> Result<Self> {
        let vp9 = codec == VideoCodec::Vp9;
        let large = config.width as u64 * config.height as u64 >= 1280 * 720;
        let speed = match (tuning.speed, vp9) {
            (Some(s), false) if (6..=16).contains(&s) => s,
            (Some(s), true) if (7..=9).contains(&s) => s,
            (Some(s), _) => {
                return Err(Error::InvalidConfig(format!(
                    "{} speed must be {}, got {s}",
                    if vp9 { "VP9" } else { "VP8" },
                    if vp9 { "7..=9" } else { "6..=16" }
                )))
            }
            (None, false) => {
                if large {
                    VP8_SPEED_HD
                } else {
                    6
                }
            }
            (None, true) => {
                if large {
                    VP9_SPEED_HD
                } else {
                    7
                }
            }
        };
        let threads = tuning
            .threads
            .unwrap_or_else(|| default_threads(config.width, config.height));
        let error_resilient = tuning.error_resilient.unwrap_or(!vp9);
        // libvpx allocates through our vpx_mem (lazily zeroed, unmapped on free).
        super::vpx_mem::link();

        // SAFETY: the interface getters return pointers to static tables.
        let iface = unsafe {
            if vp9 {
                vpx::vpx_codec_vp9_cx()
            } else {
                vpx::vpx_codec_vp8_cx()
            }
        };
        // vpx_codec_enc_config_default fills every field (zero is not a valid g_bit_depth, so
        // the struct is only assumed initialized after it succeeded).
        let mut raw = Box::new(std::mem::MaybeUninit::<vpx::vpx_codec_enc_cfg_t>::zeroed());
        // SAFETY: iface is a valid encoder interface; raw points to writable memory of the
        // right size and alignment.
        let err = unsafe { vpx::vpx_codec_enc_config_default(iface, raw.as_mut_ptr(), 0) };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Error::Encoding(vpx_message(
                ptr::null_mut(),
                "vpx_codec_enc_config_default",
                err,
            )));
        }
        // SAFETY: initialized by vpx_codec_enc_config_default above; MaybeUninit<T> has T's
        // layout, so the box can be reinterpreted.
        let mut cfg: Box<vpx::vpx_codec_enc_cfg_t> =
            unsafe { Box::from_raw(Box::into_raw(raw).cast()) };
        cfg.g_w = config.width;
        cfg.g_h = config.height;
        cfg.g_profile = 0;
        cfg.g_threads = threads;
        cfg.g_timebase = vpx::vpx_rational {
            num: 1,
            den: 1_000_000,
        };
        cfg.g_error_resilient = if error_resilient {
            vpx::VPX_ERROR_RESILIENT_DEFAULT
        } else {
            0
        };
        cfg.g_pass = vpx::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.g_lag_in_frames = 0;
        cfg.rc_end_usage = vpx::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = (config.bitrate / 1000).max(1);
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_resize_allowed = 0;
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = if vp9 { 52 } else { 56 };
        cfg.rc_undershoot_pct = if vp9 { 50 } else { 100 };
        cfg.rc_overshoot_pct = if vp9 { 50 } else { 15 };
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        // Keyframes are placed by VideoEncoder (interval and requests), never by libvpx.
        cfg.kf_mode = vpx::vpx_kf_mode::VPX_KF_DISABLED;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = u32::MAX / 2;

        let mut ctx = VpxContext::zeroed();
        // SAFETY: ctx and cfg are heap-allocated and outlive the codec (both owned by Self,
        // ctx destroyed in its Drop before cfg is freed: fields drop in declaration order).
        let err = unsafe {
            vpx::vpx_codec_enc_init_ver(
                ctx.ptr(),
                iface,
                &*cfg,
                0,
                vpx::VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Error::Encoding(vpx_message(
                ctx.ptr(),
                &format!(
                    "{codec:?} encoder init ({}x{})",
                    config.width, config.height
                ),
                err,
            )));
        }
        use vpx::vp8e_enc_control_id as id;
        // Keyframes may be at most ~9x an average frame (as in libwebrtc).
        let max_intra_pct = ((cfg.rc_buf_optimal_sz as f64 * 0.5 * config.framerate as f64 / 10.0)
            as c_int)
            .max(300);
        // VP8 in real-time mode reads a positive cpu-used as a CPU budget and picks its speed
        // from measured encode times (non-deterministic); -N pins speed N (as libwebrtc does).
        let cpu_used = if vp9 { speed } else { -speed };
        ctx.control(id::VP8E_SET_CPUUSED as c_int, cpu_used, "cpu-used")?;
        ctx.control(
            id::VP8E_SET_MAX_INTRA_BITRATE_PCT as c_int,
            max_intra_pct,
            "max intra bitrate",
        )?;
        if vp9 {
            let tile_columns_log2 = if threads >= 4 && config.width >= 1024 {
                2
            } else if threads >= 2 && config.width >= 512 {
                1
            } else {
                0
            };
            ctx.control(id::VP9E_SET_ROW_MT as c_int, 1, "row-mt")?;
            ctx.control(
                id::VP9E_SET_TILE_COLUMNS as c_int,
                tile_columns_log2,
                "tile columns",
            )?;
            ctx.control(id::VP9E_SET_AQ_MODE as c_int, 3, "aq mode")?;
            ctx.control(
                id::VP9E_SET_FRAME_PARALLEL_DECODING as c_int,
                0,
                "frame parallel decoding",
            )?;
            ctx.control(
                id::VP9E_SET_NOISE_SENSITIVITY as c_int,
                0,
                "noise sensitivity",
            )?;
        } else {
            ctx.control(
                id::VP8E_SET_NOISE_SENSITIVITY as c_int,
                0,
                "noise sensitivity",
            )?;
            ctx.control(
                id::VP8E_SET_STATIC_THRESHOLD as c_int,
                1,
                "static threshold",
            )?;
            ctx.control(
                id::VP8E_SET_TOKEN_PARTITIONS as c_int,
                0,
                "token partitions",
            )?;
        }
        Ok(Self { ctx, cfg, codec })
    }

    fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        let old = self.cfg.rc_target_bitrate;
        self.cfg.rc_target_bitrate = (bitrate / 1000).max(1);
        // SAFETY: initialized context; cfg is the boxed configuration libvpx already points to.
        let err = unsafe { vpx::vpx_codec_enc_config_set(self.ctx.ptr(), &*self.cfg) };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            self.cfg.rc_target_bitrate = old;
            return Err(Error::Encoding(vpx_message(
                self.ctx.ptr(),
                &format!("{:?} set bitrate {bitrate}", self.codec),
                err,
            )));
        }
        Ok(())
    }

    fn encode(
        &mut self,
        frame: &I420Frame<'_>,
        pts: i64,
        duration: i64,
        force_keyframe: bool,
    ) -> Result<Vec<(Vec<u8>, bool)>> {
        let strides = frame.strides();
        // SAFETY: vpx_image_t is plain C data; zero is a valid value of each of its enums.
        let mut img: vpx::vpx_image_t = unsafe { std::mem::zeroed() };
        img.fmt = vpx::vpx_img_fmt::VPX_IMG_FMT_I420;
        img.w = frame.width();
        img.h = frame.height();
        img.d_w = frame.width();
        img.d_h = frame.height();
        img.bit_depth = 8;
        img.x_chroma_shift = 1;
        img.y_chroma_shift = 1;
        img.bps = 12;
        // libvpx only reads the source planes (it copies them into its own frame buffers), so
        // the const-to-mut casts are never written through. I420Frame guarantees every plane
        // holds `stride * (rows - 1) + row_width` bytes, which is all libvpx reads.
        img.planes = [
            frame.y().as_ptr() as *mut u8,
            frame.u().as_ptr() as *mut u8,
            frame.v().as_ptr() as *mut u8,
            ptr::null_mut(),
        ];
        for (i, s) in strides.iter().enumerate() {
            img.stride[i] = c_int::try_from(*s)
                .map_err(|_| Error::InvalidData(format!("plane stride {s} is too large")))?;
        }
        let flags: vpx::vpx_enc_frame_flags_t = if force_keyframe {
            vpx::VPX_EFLAG_FORCE_KF as vpx::vpx_enc_frame_flags_t
        } else {
            0
        };
        // SAFETY: initialized context; img describes valid, live planes for this call.
        let err = unsafe {
            vpx::vpx_codec_encode(
                self.ctx.ptr(),
                &img,
                pts,
                duration as c_ulong,
                flags,
                vpx::VPX_DL_REALTIME as c_ulong,
            )
        };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Error::Encoding(vpx_message(
                self.ctx.ptr(),
                &format!("{:?} encode", self.codec),
                err,
            )));
        }
        let mut out = Vec::with_capacity(1);
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: iterating the packets of the frame just encoded; each packet (and its
            // buffer) stays valid until the next encode call, and is copied out at once.
            let pkt = unsafe { vpx::vpx_codec_get_cx_data(self.ctx.ptr(), &mut iter) };
            if pkt.is_null() {
                break;
            }
            let pkt = unsafe { &*pkt };
            if pkt.kind != vpx::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            let f = unsafe { pkt.data.frame };
            if f.buf.is_null() || f.sz == 0 {
                continue;
            }
            let data = unsafe { std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize) };
            out.push((data.to_vec(), f.flags & vpx::VPX_FRAME_IS_KEY != 0));
        }
        Ok(out)
    }
}

// ============================================================================================
// Video decoder
// ============================================================================================

enum DecoderBackend {
    Vpx(VpxDecoder),
    #[cfg(feature = "h264")]
    H264(h264::H264Decoder),
}

/// A video decoder for one incoming track. Output is packed I420 ([`I420Buffer`]); odd-sized
/// streams (browsers may send them) are cropped to the even size below (one column/row less).
pub struct VideoDecoder {
    codec: VideoCodec,
    backend: DecoderBackend,
}

impl std::fmt::Debug for VideoDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoDecoder")
            .field("codec", &self.codec)
            .finish()
    }
}

impl VideoDecoder {
    pub fn new(codec: VideoCodec) -> Result<Self> {
        let backend = match codec {
            VideoCodec::Vp8 | VideoCodec::Vp9 => DecoderBackend::Vpx(VpxDecoder::new(codec)?),
            #[cfg(feature = "h264")]
            VideoCodec::H264 => DecoderBackend::H264(h264::H264Decoder::new()?),
            #[cfg(not(feature = "h264"))]
            VideoCodec::H264 => {
                return Err(Error::InvalidConfig(
                    "videoCodec 'h264' is not built in: build with the cargo feature `h264`".into(),
                ))
            }
        };
        Ok(Self { codec, backend })
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Decodes one complete encoded frame (all RTP packets of a frame, reassembled).
    ///
    /// `Ok(Some(frame))` for a picture, `Ok(None)` when the data produced no picture to show.
    /// An empty buffer is [`Error::InvalidData`]; garbage, a delta frame before the first
    /// keyframe, or a frame decoded with missing references (VP8 reports those) is
    /// [`Error::Decoding`]: the caller should then wait for the next keyframe and send PLI.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420Buffer>> {
        if data.is_empty() {
            return Err(Error::InvalidData(format!("empty {:?} frame", self.codec)));
        }
        match &mut self.backend {
            DecoderBackend::Vpx(d) => d.decode(data),
            #[cfg(feature = "h264")]
            DecoderBackend::H264(d) => d.decode(data),
        }
    }

    /// Whether `data` (a complete encoded frame) is a keyframe, without decoding it; `false` for
    /// anything unparsable. For H.264: whether the access unit holds an IDR slice.
    pub fn is_keyframe(codec: VideoCodec, data: &[u8]) -> bool {
        if data.is_empty() {
            return false;
        }
        match codec {
            VideoCodec::Vp8 | VideoCodec::Vp9 => {
                let Ok(len) = c_uint::try_from(data.len()) else {
                    return false;
                };
                // SAFETY: static interface; `si.sz` tells libvpx the struct's size; data is
                // valid for `len` bytes.
                unsafe {
                    let iface = if codec == VideoCodec::Vp9 {
                        vpx::vpx_codec_vp9_dx()
                    } else {
                        vpx::vpx_codec_vp8_dx()
                    };
                    let mut si: vpx::vpx_codec_stream_info_t = std::mem::zeroed();
                    si.sz = std::mem::size_of::<vpx::vpx_codec_stream_info_t>() as c_uint;
                    let err = vpx::vpx_codec_peek_stream_info(iface, data.as_ptr(), len, &mut si);
                    err == vpx::vpx_codec_err_t::VPX_CODEC_OK && si.is_kf != 0
                }
            }
            VideoCodec::H264 => h264_has_idr(data),
        }
    }
}

/// Whether an Annex B access unit contains an IDR slice (NAL type 5).
fn h264_has_idr(data: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(h) = data.get(i + 3) {
                if h & 0x1f == 5 {
                    return true;
                }
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

struct VpxDecoder {
    ctx: VpxContext,
    codec: VideoCodec,
}

// SAFETY: as for VpxEncoder.
unsafe impl Send for VpxDecoder {}

impl VpxDecoder {
    fn new(codec: VideoCodec) -> Result<Self> {
        super::vpx_mem::link();
        // SAFETY: static interface tables.
        let iface = unsafe {
            if codec == VideoCodec::Vp9 {
                vpx::vpx_codec_vp9_dx()
            } else {
                vpx::vpx_codec_vp8_dx()
            }
        };
        let cfg = vpx::vpx_codec_dec_cfg_t {
            // VP8 decodes one token partition (what we send) on one thread anyway, and its
            // threads spin-wait. VP9 could decode tile columns in parallel, but at 720p a
            // second thread cost 8-15 % more decode CPU and 30+ context switches per frame for
            // no gain in wall time (see VP9_SPEED_HD); streams are decoded in parallel per
            // peer instead.
            threads: 1,
            w: 0,
            h: 0,
        };
        let mut ctx = VpxContext::zeroed();
        // SAFETY: ctx is heap-allocated and zeroed; libvpx copies cfg during init.
        let err = unsafe {
            vpx::vpx_codec_dec_init_ver(
                ctx.ptr(),
                iface,
                &cfg,
                0,
                vpx::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Error::Decoding(vpx_message(
                ctx.ptr(),
                &format!("{codec:?} decoder init"),
                err,
            )));
        }
        Ok(Self { ctx, codec })
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Buffer>> {
        let len = c_uint::try_from(data.len())
            .map_err(|_| Error::InvalidData(format!("{:?} frame too large", self.codec)))?;
        // SAFETY: initialized context; data is valid for `len` bytes during the call.
        let err = unsafe {
            vpx::vpx_codec_decode(self.ctx.ptr(), data.as_ptr(), len, ptr::null_mut(), 0)
        };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Error::Decoding(vpx_message(
                self.ctx.ptr(),
                &format!("{:?} decode", self.codec),
                err,
            )));
        }
        let mut corrupted: c_int = 0;
        // SAFETY: VP8D_GET_FRAME_CORRUPTED writes one int through the pointer. VP9 may not
        // support it (an error we ignore: then `corrupted` stays 0).
        let ok = unsafe {
            vpx::vpx_codec_control_(
                self.ctx.ptr(),
                vpx::vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int,
                &mut corrupted as *mut c_int,
            )
        } == vpx::vpx_codec_err_t::VPX_CODEC_OK;
        let mut picture = None;
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: images returned stay valid until the next decode call.
            let img = unsafe { vpx::vpx_codec_get_frame(self.ctx.ptr(), &mut iter) };
            if img.is_null() {
                break;
            }
            picture = Some(copy_vpx_image(unsafe { &*img }, self.codec)?);
        }
        if ok && corrupted != 0 {
            return Err(Error::Decoding(format!(
                "{:?} frame decoded with missing references (corrupt): wait for a keyframe",
                self.codec
            )));
        }
        Ok(picture)
    }
}

/// Copies a decoded libvpx image (planes with strides) into a packed I420 buffer.
fn copy_vpx_image(img: &vpx::vpx_image_t, codec: VideoCodec) -> Result<I420Buffer> {
    if img.fmt != vpx::vpx_img_fmt::VPX_IMG_FMT_I420 || img.bit_depth != 8 {
        return Err(Error::Decoding(format!(
            "{codec:?} stream decodes to {:?} at {} bits; only 8-bit I420 (profile 0) is supported",
            img.fmt, img.bit_depth
        )));
    }
    let width = img.d_w & !1;
    let height = img.d_h & !1;
    check_dimensions(width, height)
        .map_err(|e| Error::Decoding(format!("{codec:?} decoded picture: {e}")))?;
    let (w, h) = (width as usize, height as usize);
    let mut data = Vec::with_capacity(w * h * 3 / 2);
    for (plane, (pw, ph)) in [(w, h), (w / 2, h / 2), (w / 2, h / 2)]
        .into_iter()
        .enumerate()
    {
        let stride = img.stride[plane];
        let base = img.planes[plane];
        if base.is_null() || stride < 0 || (stride as usize) < pw {
            return Err(Error::Decoding(format!(
                "{codec:?} decoder returned a plane with stride {stride} for width {pw}"
            )));
        }
        for r in 0..ph {
            // SAFETY: libvpx's image holds `ph` rows of `stride` bytes (at least `pw` used) in
            // each plane, valid until the next decode call.
            let row = unsafe {
                std::slice::from_raw_parts(base.add(r * stride as usize) as *const u8, pw)
            };
            data.extend_from_slice(row);
        }
    }
    I420Buffer::new(width, height, data)
}

/// The version of libvpx linked in (e.g. "v1.12.0").
pub fn libvpx_version() -> String {
    // SAFETY: returns a static string.
    cstr(unsafe { vpx::vpx_codec_version_str() }).unwrap_or_default()
}

/// The version of libopus linked in.
pub fn libopus_version() -> &'static str {
    opus::version()
}

// ============================================================================================
// H.264 (feature `h264`): OpenH264, built from source by the `openh264` crate
// ============================================================================================

#[cfg(feature = "h264")]
mod h264 {
    use super::{Error, I420Buffer, I420Frame, Result, VideoEncoderConfig, VideoEncoderTuning};
    use openh264::encoder::{
        BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod,
        RateControlMode, UsageType,
    };
    use openh264::formats::YUVSource;
    use openh264::{OpenH264API, Timestamp};

    /// An I420Frame seen as OpenH264's YUV source (reads planes through the strides).
    struct Source<'a>(&'a I420Frame<'a>);

    impl YUVSource for Source<'_> {
        fn dimensions(&self) -> (usize, usize) {
            (self.0.width() as usize, self.0.height() as usize)
        }
        fn strides(&self) -> (usize, usize, usize) {
            let s = self.0.strides();
            (s[0], s[1], s[2])
        }
        fn y(&self) -> &[u8] {
            self.0.y()
        }
        fn u(&self) -> &[u8] {
            self.0.u()
        }
        fn v(&self) -> &[u8] {
            self.0.v()
        }
    }

    pub(super) struct H264Encoder {
        enc: Encoder,
    }

    impl H264Encoder {
        pub(super) fn new(
            config: &VideoEncoderConfig,
            tuning: &VideoEncoderTuning,
        ) -> Result<Self> {
            if config.width.max(config.height) > 3840 || config.width.min(config.height) > 2160 {
                return Err(Error::InvalidConfig(format!(
                    "H.264 (OpenH264) supports up to 3840x2160, got {}x{}",
                    config.width, config.height
                )));
            }
            let threads = tuning.threads.unwrap_or(1).min(u16::MAX as u32) as u16;
            let cfg = EncoderConfig::new()
                .bitrate(BitRate::from_bps(config.bitrate))
                .max_frame_rate(FrameRate::from_hz(config.framerate as f32))
                .rate_control_mode(RateControlMode::Bitrate)
                .usage_type(UsageType::CameraVideoRealTime)
                .skip_frames(false)
                .complexity(Complexity::Low)
                .intra_frame_period(IntraFramePeriod::from_num_frames(0))
                .num_threads(threads);
            let enc = Encoder::with_api_config(OpenH264API::from_source(), cfg)
                .map_err(|e| Error::Encoding(format!("H.264 encoder: {e}")))?;
            Ok(Self { enc })
        }

        pub(super) fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
            use openh264_sys2::{
                SBitrateInfo, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_ALL,
            };
            let mut info = SBitrateInfo {
                iLayer: SPATIAL_LAYER_ALL,
                iBitrate: bitrate as i32,
            };
            for option in [ENCODER_OPTION_MAX_BITRATE, ENCODER_OPTION_BITRATE] {
                // SAFETY: both options take a pointer to an SBitrateInfo, read during the call.
                let rc = unsafe {
                    self.enc
                        .raw_api()
                        .set_option(option, (&mut info as *mut SBitrateInfo).cast())
                };
                if rc != 0 {
                    return Err(Error::Encoding(format!(
                        "H.264 set bitrate {bitrate}: error {rc}"
                    )));
                }
            }
            Ok(())
        }

        pub(super) fn encode(
            &mut self,
            frame: &I420Frame<'_>,
            pts_us: i64,
            force_keyframe: bool,
        ) -> Result<Vec<(Vec<u8>, bool)>> {
            if force_keyframe {
                self.enc.force_intra_frame();
            }
            let ts = Timestamp::from_millis((pts_us / 1000).max(0) as u64);
            let bs = self
                .enc
                .encode_at(&Source(frame), ts)
                .map_err(|e| Error::Encoding(format!("H.264 encode: {e}")))?;
            let keyframe = matches!(bs.frame_type(), FrameType::IDR | FrameType::I);
            if matches!(bs.frame_type(), FrameType::Skip | FrameType::Invalid) {
                return Ok(Vec::new());
            }
            let data = bs.to_vec();
            if data.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![(data, keyframe)])
        }
    }

    pub(super) struct H264Decoder {
        dec: openh264::decoder::Decoder,
    }

    impl H264Decoder {
        pub(super) fn new() -> Result<Self> {
            let dec = openh264::decoder::Decoder::with_api_config(
                OpenH264API::from_source(),
                openh264::decoder::DecoderConfig::new(),
            )
            .map_err(|e| Error::Decoding(format!("H.264 decoder: {e}")))?;
            Ok(Self { dec })
        }

        pub(super) fn decode(&mut self, data: &[u8]) -> Result<Option<I420Buffer>> {
            let Some(yuv) = self
                .dec
                .decode(data)
                .map_err(|e| Error::Decoding(format!("H.264 decode: {e}")))?
            else {
                return Ok(None);
            };
            let (w, h) = yuv.dimensions();
            let (ys, us, vs) = yuv.strides();
            let (width, height) = ((w as u32) & !1, (h as u32) & !1);
            let frame = I420Frame::new(width, height, yuv.y(), ys, yuv.u(), us, yuv.v(), vs)
                .map_err(|e| Error::Decoding(format!("H.264 decoded picture: {e}")))?;
            Ok(Some(frame.to_buffer()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::FrameDuration;
    use crate::media::video::psnr_y;

    // ---------------------------------------------------------------- audio helpers

    fn sine(freq: f64, amplitude: f64, start: usize, n: usize) -> impl Iterator<Item = f64> {
        (start..start + n).map(move |i| {
            amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()
        })
    }

    /// Interleaved frame `index` of a 440 Hz tone: left at amplitude 0.5, right at 0.25.
    fn tone_frame(index: usize, per_channel: usize, channels: u16) -> Vec<f32> {
        let left: Vec<f64> = sine(440.0, 0.5, index * per_channel, per_channel).collect();
        let right: Vec<f64> = sine(440.0, 0.25, index * per_channel, per_channel).collect();
        let mut out = Vec::with_capacity(per_channel * channels as usize);
        for i in 0..per_channel {
            out.push(left[i] as f32);
            if channels == 2 {
                out.push(right[i] as f32);
            }
        }
        out
    }

    fn channel(interleaved: &[f32], channels: u16, c: usize) -> Vec<f64> {
        interleaved
            .iter()
            .skip(c)
            .step_by(channels as usize)
            .map(|s| *s as f64)
            .collect()
    }

    /// Goertzel power of `freq` in `x` (48 kHz).
    fn goertzel(x: &[f64], freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for v in x {
            let s = v + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    }

    /// The strongest frequency between 300 and 600 Hz (coarse 1 Hz scan, then 0.1 Hz).
    fn dominant_frequency(x: &[f64]) -> f64 {
        let best = |lo: f64, hi: f64, step: f64| {
            let mut f = lo;
            let (mut bf, mut bp) = (lo, f64::MIN);
            while f <= hi {
                let p = goertzel(x, f);
                if p > bp {
                    bp = p;
                    bf = f;
                }
                f += step;
            }
            bf
        };
        let coarse = best(300.0, 600.0, 1.0);
        best(coarse - 1.0, coarse + 1.0, 0.1)
    }

    fn rms(x: &[f64]) -> f64 {
        (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn db(a: f64, b: f64) -> f64 {
        20.0 * (a / b).log10()
    }

    fn opus_round_trip(channels: u16, duration: FrameDuration) {
        let config = AudioEncoderConfig {
            channels,
            ..Default::default()
        };
        let mut enc = OpusEncoder::new(&config).unwrap();
        let mut dec = OpusDecoder::new(48_000, channels).unwrap();
        let per_channel = duration.samples_per_channel(48_000);
        let frames = 48_000 / per_channel; // one second
        let mut decoded = Vec::new();
        for i in 0..frames {
            let pcm = tone_frame(i, per_channel, channels);
            let packet = enc.encode_f32(&pcm).unwrap();
            assert!(!packet.is_empty() && packet.len() <= MAX_OPUS_PACKET);
            assert_eq!(OpusDecoder::packet_samples(&packet).unwrap(), per_channel);
            let out = dec.decode_f32(&packet).unwrap();
            assert_eq!(out.len(), per_channel * channels as usize);
            decoded.extend(out);
        }
        // Skip the first 200 ms (codec delay, encoder warm-up); analyse the rest per channel.
        let skip = 9_600 * channels as usize;
        for c in 0..channels as usize {
            let x = channel(&decoded[skip..], channels, c);
            let expected: Vec<f64> =
                sine(440.0, if c == 0 { 0.5 } else { 0.25 }, 0, x.len()).collect();
            let f = dominant_frequency(&x);
            assert!(
                (f - 440.0).abs() <= 5.0,
                "{channels} ch, {duration:?}, channel {c}: {f} Hz"
            );
            let level = db(rms(&x), rms(&expected));
            assert!(
                level.abs() <= 3.0,
                "{channels} ch, {duration:?}, channel {c}: level off by {level:.2} dB"
            );
        }
    }

    #[test]
    fn media_opus_mono_sine_round_trip_all_durations() {
        for d in FrameDuration::ALL {
            opus_round_trip(1, d);
        }
    }

    #[test]
    fn media_opus_stereo_sine_round_trip_all_durations() {
        for d in FrameDuration::ALL {
            opus_round_trip(2, d);
        }
    }

    #[test]
    fn media_opus_i16_input_and_output() {
        let mut enc = OpusEncoder::new(&AudioEncoderConfig::default()).unwrap();
        let mut dec = OpusDecoder::new(48_000, 1).unwrap();
        let mut decoded = Vec::new();
        for i in 0..50 {
            let pcm: Vec<i16> = tone_frame(i, 960, 1)
                .iter()
                .map(|s| (s * 32767.0) as i16)
                .collect();
            let packet = enc.encode(Pcm::I16(&pcm)).unwrap();
            let out = dec.decode_i16(&packet).unwrap();
            assert_eq!(out.len(), 960);
            decoded.extend(out.iter().map(|s| *s as f64 / 32768.0));
        }
        let x = &decoded[9_600..];
        assert!((dominant_frequency(x) - 440.0).abs() <= 5.0);
        let expected: Vec<f64> = sine(440.0, 0.5, 0, x.len()).collect();
        assert!(db(rms(x), rms(&expected)).abs() <= 3.0);
    }

    #[test]
    fn media_opus_plc_gives_a_frame_of_the_right_length() {
        for channels in [1u16, 2] {
            let config = AudioEncoderConfig {
                channels,
                ..Default::default()
            };
            let mut enc = OpusEncoder::new(&config).unwrap();
            let mut dec = OpusDecoder::new(48_000, channels).unwrap();
            for i in 0..10 {
                let p = enc.encode_f32(&tone_frame(i, 960, channels)).unwrap();
                dec.decode_f32(&p).unwrap();
            }
            let ch = channels as usize;
            for n in [120, 480, 960, 1920, 2880] {
                let out = dec.conceal_f32(n).unwrap();
                assert_eq!(out.len(), n * ch);
                assert!(out.iter().all(|s| s.is_finite()));
            }
            assert_eq!(dec.conceal_i16(960).unwrap().len(), 960 * ch);
            // The concealed 20 ms right after real audio keeps a tone going (not silence).
            let mut dec2 = OpusDecoder::new(48_000, channels).unwrap();
            let mut enc2 = OpusEncoder::new(&config).unwrap();
            for i in 0..10 {
                let p = enc2.encode_f32(&tone_frame(i, 960, channels)).unwrap();
                dec2.decode_f32(&p).unwrap();
            }
            let plc = dec2.conceal_f32(960).unwrap();
            assert!(rms(&channel(&plc, channels, 0)) > 0.05);
            // Bad durations.
            for n in [0, 100, 961, 5_880] {
                assert!(
                    matches!(dec.conceal_f32(n), Err(Error::InvalidData(_))),
                    "{n}"
                );
            }
        }
    }

    /// SNR (dB) of `x` against the reference `r`.
    fn snr(x: &[f32], r: &[f32]) -> f64 {
        let e: f64 = x.iter().zip(r).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let s: f64 = r.iter().map(|b| (*b as f64).powi(2)).sum();
        10.0 * (s / e).log10()
    }

    #[test]
    fn media_opus_fec_recovers_a_lost_packet() {
        for (channels, bitrate) in [(1u16, 64_000), (1, 24_000), (2, 64_000)] {
            let config = AudioEncoderConfig {
                channels,
                bitrate,
                fec: true,
                ..Default::default()
            };
            let mut enc = OpusEncoder::new(&config).unwrap();
            let packets: Vec<Vec<u8>> = (0..30)
                .map(|i| enc.encode_f32(&tone_frame(i, 960, channels)).unwrap())
                .collect();
            // What a loss-free receiver decodes for every packet.
            let mut reference = OpusDecoder::new(48_000, channels).unwrap();
            let refs: Vec<Vec<f32>> = packets
                .iter()
                .map(|p| reference.decode_f32(p).unwrap())
                .collect();
            let lost = 20;
            let receiver = || {
                let mut dec = OpusDecoder::new(48_000, channels).unwrap();
                for p in &packets[..lost] {
                    dec.decode_f32(p).unwrap();
                }
                dec
            };
            // FEC: recover packet 20 from packet 21, then decode 21 itself.
            let mut dec = receiver();
            let recovered = dec.decode_fec_f32(&packets[lost + 1], 960).unwrap();
            assert_eq!(recovered.len(), 960 * channels as usize);
            let next = dec.decode_f32(&packets[lost + 1]).unwrap();
            assert_eq!(next.len(), 960 * channels as usize);
            // PLC only, for comparison.
            let concealed = receiver().conceal_f32(960).unwrap();
            let (fec_snr, plc_snr) = (snr(&recovered, &refs[lost]), snr(&concealed, &refs[lost]));
            assert!(
                fec_snr > 20.0 && fec_snr > plc_snr + 10.0,
                "{channels} ch {bitrate} b/s: FEC {fec_snr:.1} dB, PLC {plc_snr:.1} dB"
            );
            let x = channel(&recovered, channels, 0);
            assert!((dominant_frequency(&x) - 440.0).abs() <= 5.0);
            // Packet and duration checks.
            assert!(matches!(
                dec.decode_fec_f32(&[], 960),
                Err(Error::InvalidData(_))
            ));
            assert!(matches!(
                dec.decode_fec_f32(&packets[0], 7),
                Err(Error::InvalidData(_))
            ));
            assert_eq!(
                dec.decode_fec_i16(&packets[lost + 2], 960).unwrap().len(),
                960 * channels as usize
            );
        }
    }

    #[test]
    fn media_opus_runtime_changes_and_bad_input() {
        let mut enc = OpusEncoder::new(&AudioEncoderConfig::default()).unwrap();
        let frame = tone_frame(0, 960, 1);
        let big: usize = (0..25)
            .map(|i| enc.encode_f32(&tone_frame(i, 960, 1)).unwrap().len())
            .sum();
        enc.set_bitrate(12_000).unwrap();
        assert_eq!(enc.config().bitrate, 12_000);
        let small: usize = (25..50)
            .map(|i| enc.encode_f32(&tone_frame(i, 960, 1)).unwrap().len())
            .sum();
        assert!(small * 2 < big, "12 kb/s: {small} bytes vs 64 kb/s: {big}");
        for bad in [0, 5_999, 510_001] {
            assert!(matches!(enc.set_bitrate(bad), Err(Error::InvalidConfig(_))));
        }
        assert!(enc.set_packet_loss_percent(101).is_err());
        enc.set_fec(false).unwrap();
        enc.set_dtx(true).unwrap();
        // Wrong lengths, NaN, stereo length on a mono encoder.
        for len in [0, 1, 959, 1000, 1920 + 1] {
            assert!(matches!(
                enc.encode_f32(&vec![0.0; len]),
                Err(Error::InvalidData(_))
            ));
            assert!(matches!(
                enc.encode_i16(&vec![0; len]),
                Err(Error::InvalidData(_))
            ));
        }
        let mut nan = frame.clone();
        nan[10] = f32::NAN;
        assert!(matches!(enc.encode_f32(&nan), Err(Error::InvalidData(_))));
        nan[10] = f32::INFINITY;
        assert!(matches!(enc.encode_f32(&nan), Err(Error::InvalidData(_))));
        // Bad configs.
        assert!(matches!(
            OpusEncoder::new(&AudioEncoderConfig {
                sample_rate: 44_100,
                ..Default::default()
            }),
            Err(Error::InvalidData(_))
        ));
        assert!(OpusDecoder::new(16_000, 1).is_err());
        assert!(OpusDecoder::new(48_000, 3).is_err());
        // Empty and malformed packets are errors, not panics.
        let mut dec = OpusDecoder::new(48_000, 1).unwrap();
        assert!(matches!(dec.decode_f32(&[]), Err(Error::InvalidData(_))));
        assert!(matches!(dec.decode_i16(&[]), Err(Error::InvalidData(_))));
        assert!(matches!(
            OpusDecoder::packet_samples(&[]),
            Err(Error::InvalidData(_))
        ));
        // Code 3 without its frame-count byte; code 3 with zero frames; code 2 with a length
        // byte pointing past the end.
        for bad in [&[0x03u8][..], &[0x03, 0x00], &[0x02, 0xff, 0x01]] {
            assert!(
                matches!(dec.decode_f32(bad), Err(Error::Decoding(_))),
                "{bad:?}"
            );
        }
        // Random bytes: an error or some samples, never a panic; the decoder stays usable.
        let mut x: u32 = 12345;
        for _ in 0..200 {
            let len = 1 + (x % 300) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) as u8
                })
                .collect();
            let _ = dec.decode_f32(&junk);
        }
        dec.reset().unwrap();
        let mut enc = OpusEncoder::new(&AudioEncoderConfig::default()).unwrap();
        let p = enc.encode_f32(&frame).unwrap();
        assert_eq!(dec.decode_f32(&p).unwrap().len(), 960);
        let mut buf = vec![0.0f32; MAX_OPUS_FRAME_SAMPLES];
        assert_eq!(dec.decode_f32_into(&p, &mut buf).unwrap(), 960);
    }

    #[test]
    fn media_opus_dtx_shrinks_silence() {
        let config = AudioEncoderConfig {
            dtx: true,
            ..Default::default()
        };
        let mut enc = OpusEncoder::new(&config).unwrap();
        let silence = vec![0.0f32; 960];
        let sizes: Vec<usize> = (0..50)
            .map(|_| enc.encode_f32(&silence).unwrap().len())
            .collect();
        // After the first ~200 ms, silence is 1-byte packets except for a comfort-noise
        // refresh every 400 ms.
        let tiny = sizes[10..].iter().filter(|n| **n <= 2).count();
        assert!(tiny >= 35, "{sizes:?}");
        assert!(sizes[..5].iter().all(|n| *n > 2), "{sizes:?}");
    }

    // ---------------------------------------------------------------- video helpers

    fn config(width: u32, height: u32, bitrate: u32, keyframe_interval: u32) -> VideoEncoderConfig {
        VideoEncoderConfig {
            width,
            height,
            framerate: 30,
            bitrate,
            keyframe_interval,
        }
    }

    /// Encodes `n` pattern frames, decodes them, returns (min Y PSNR, encoded frames).
    fn round_trip(
        codec: VideoCodec,
        cfg: &VideoEncoderConfig,
        n: u32,
    ) -> (f64, Vec<EncodedVideoFrame>) {
        let mut enc = VideoEncoder::new(codec, cfg).unwrap();
        let mut dec = VideoDecoder::new(codec).unwrap();
        let mut min_psnr = f64::INFINITY;
        let mut all = Vec::new();
        for i in 0..n {
            let src = I420Buffer::test_pattern(cfg.width, cfg.height, i).unwrap();
            let out = enc.encode(&src.as_frame(), i as i64 * 33_333).unwrap();
            assert_eq!(
                out.len(),
                1,
                "{codec:?} frame {i}: one encoded frame per input"
            );
            for f in out {
                assert_eq!(VideoDecoder::is_keyframe(codec, &f.data), f.keyframe);
                let pic = dec.decode(&f.data).unwrap().expect("a picture per frame");
                assert_eq!((pic.width(), pic.height()), (cfg.width, cfg.height));
                assert_eq!(pic.data().len(), cfg.frame_size());
                let p = psnr_y(&src.as_frame(), &pic.as_frame()).unwrap();
                min_psnr = min_psnr.min(p);
                all.push(f);
            }
        }
        (min_psnr, all)
    }

    fn check_pattern_round_trip(codec: VideoCodec, width: u32, height: u32, bitrate: u32, n: u32) {
        let cfg = config(width, height, bitrate, 0);
        let (psnr, frames) = round_trip(codec, &cfg, n);
        let bytes: usize = frames.iter().map(|f| f.data.len()).sum();
        eprintln!(
            "{codec:?} {width}x{height}: min Y PSNR {psnr:.2} dB over {n} frames, {bytes} bytes"
        );
        assert!(
            psnr > 30.0,
            "{codec:?} {width}x{height}: Y PSNR {psnr:.2} dB"
        );
        assert!(frames[0].keyframe, "first frame is a keyframe");
        assert!(
            frames[1..].iter().all(|f| !f.keyframe),
            "no other keyframes"
        );
    }

    #[test]
    fn media_vp8_pattern_round_trip_320x240() {
        check_pattern_round_trip(VideoCodec::Vp8, 320, 240, 600_000, 30);
    }

    #[test]
    fn media_vp9_pattern_round_trip_320x240() {
        check_pattern_round_trip(VideoCodec::Vp9, 320, 240, 600_000, 30);
    }

    #[test]
    fn media_vp8_pattern_round_trip_1280x720() {
        check_pattern_round_trip(VideoCodec::Vp8, 1280, 720, 2_500_000, 10);
    }

    #[test]
    fn media_vp9_pattern_round_trip_1280x720() {
        check_pattern_round_trip(VideoCodec::Vp9, 1280, 720, 2_500_000, 10);
    }

    fn check_keyframes_and_bitrate(codec: VideoCodec) {
        let cfg = config(320, 240, 800_000, 10);
        let mut enc = VideoEncoder::new(codec, &cfg).unwrap();
        let mut dec = VideoDecoder::new(codec).unwrap();
        let mut keys = Vec::new();
        let mut sizes = Vec::new();
        for i in 0..60u32 {
            if i == 13 || i == 14 {
                enc.force_keyframe();
            }
            if i == 30 {
                enc.set_bitrate(100_000).unwrap();
                assert_eq!(enc.config().bitrate, 100_000);
            }
            let src = I420Buffer::test_pattern(320, 240, i).unwrap();
            let out = enc.encode(&src.as_frame(), i as i64 * 33_333).unwrap();
            assert_eq!(out.len(), 1);
            if out[0].keyframe {
                keys.push(i);
            }
            sizes.push(out[0].data.len());
            dec.decode(&out[0].data).unwrap().unwrap();
        }
        // Interval 10 from the first frame, forced at 13 and 14 (which restart the count).
        assert_eq!(keys, vec![0, 10, 13, 14, 24, 34, 44, 54], "{codec:?}");
        // The new bitrate took effect: delta frames in the last 15 frames are much smaller.
        let delta_avg = |r: std::ops::Range<usize>| {
            let v: Vec<usize> = r
                .filter(|i| !keys.contains(&(*i as u32)))
                .map(|i| sizes[i])
                .collect();
            v.iter().sum::<usize>() as f64 / v.len() as f64
        };
        let before = delta_avg(15..30);
        let after = delta_avg(45..60);
        eprintln!("{codec:?} keyframes {keys:?}; delta frames {before:.0} B → {after:.0} B");
        assert!(
            after < before * 0.6,
            "{codec:?}: {before:.0} B → {after:.0} B per frame"
        );
        assert!(matches!(
            enc.set_bitrate(9_999),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            enc.set_bitrate(100_000_001),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn media_vp8_keyframes_forced_and_periodic_bitrate_change() {
        check_keyframes_and_bitrate(VideoCodec::Vp8);
    }

    #[test]
    fn media_vp9_keyframes_forced_and_periodic_bitrate_change() {
        check_keyframes_and_bitrate(VideoCodec::Vp9);
    }

    fn check_bad_video_input(codec: VideoCodec) {
        let cfg = config(320, 240, 500_000, 0);
        let mut enc = VideoEncoder::new(codec, &cfg).unwrap();
        // Wrong size for this encoder.
        let other = I420Buffer::test_pattern(640, 480, 0).unwrap();
        assert!(matches!(
            enc.encode(&other.as_frame(), 0),
            Err(Error::InvalidData(_))
        ));
        // A strided frame (padding after each row) encodes like the packed one.
        let packed = I420Buffer::test_pattern(320, 240, 0).unwrap();
        let (ys, cs) = (352usize, 176usize);
        let mut y = vec![0u8; ys * 240];
        let mut u = vec![0u8; cs * 120];
        let mut v = vec![0u8; cs * 120];
        for r in 0..240 {
            y[r * ys..r * ys + 320].copy_from_slice(&packed.y()[r * 320..(r + 1) * 320]);
        }
        for r in 0..120 {
            u[r * cs..r * cs + 160].copy_from_slice(&packed.u()[r * 160..(r + 1) * 160]);
            v[r * cs..r * cs + 160].copy_from_slice(&packed.v()[r * 160..(r + 1) * 160]);
        }
        let strided = I420Frame::new(320, 240, &y, ys, &u, cs, &v, cs).unwrap();
        let a = enc.encode(&strided, 0).unwrap();
        let mut enc2 = VideoEncoder::new(codec, &cfg).unwrap();
        let b = enc2.encode(&packed.as_frame(), 0).unwrap();
        assert_eq!(a[0].data, b[0].data, "{codec:?}: strides are honoured");
        // Non-increasing timestamps are tolerated.
        enc.encode(&packed.as_frame(), 0).unwrap();
        enc.encode(&packed.as_frame(), -5).unwrap();

        let mut dec = VideoDecoder::new(codec).unwrap();
        assert!(matches!(dec.decode(&[]), Err(Error::InvalidData(_))));
        for junk in [
            &[0u8][..],
            &[0xff; 7],
            &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2],
        ] {
            assert!(
                matches!(dec.decode(junk), Err(Error::Decoding(_))),
                "{codec:?} {junk:?}"
            );
        }
        // A delta frame before any keyframe (a new decoder): error, not a picture of garbage.
        let delta = enc.encode(&packed.as_frame(), 100_000).unwrap();
        assert!(!delta[0].keyframe);
        let mut fresh = VideoDecoder::new(codec).unwrap();
        assert!(fresh.decode(&delta[0].data).is_err());
        // Truncated and bit-flipped keyframes: errors or pictures, never a panic.
        let key = &b[0].data;
        for cut in [1, 3, 10, key.len() / 2] {
            let mut d = VideoDecoder::new(codec).unwrap();
            let _ = d.decode(&key[..cut]);
        }
        let mut x: u32 = 7;
        for _ in 0..50 {
            let mut broken = key.clone();
            for _ in 0..8 {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (x as usize >> 8) % broken.len();
                broken[i] ^= (x >> 3) as u8 | 1;
            }
            let mut d = VideoDecoder::new(codec).unwrap();
            let _ = d.decode(&broken);
        }
        // The decoder still decodes a valid stream after garbage.
        assert!(dec.decode(key).unwrap().is_some());
        assert!(!VideoDecoder::is_keyframe(codec, &[]));
        assert!(!VideoDecoder::is_keyframe(codec, &[0xff; 3]));
    }

    #[test]
    fn media_vp8_bad_input_is_an_error() {
        check_bad_video_input(VideoCodec::Vp8);
    }

    #[test]
    fn media_vp9_bad_input_is_an_error() {
        check_bad_video_input(VideoCodec::Vp9);
    }

    #[test]
    fn media_video_encoder_config_and_tuning_errors() {
        for codec in [VideoCodec::Vp8, VideoCodec::Vp9] {
            assert!(matches!(
                VideoEncoder::new(codec, &config(321, 240, 500_000, 0)),
                Err(Error::InvalidConfig(_))
            ));
            assert!(matches!(
                VideoEncoder::new(codec, &config(0, 240, 500_000, 0)),
                Err(Error::InvalidConfig(_))
            ));
            let bad_speed = VideoEncoderTuning {
                speed: Some(3),
                ..Default::default()
            };
            assert!(matches!(
                VideoEncoder::with_tuning(codec, &config(320, 240, 500_000, 0), &bad_speed),
                Err(Error::InvalidConfig(_))
            ));
            let bad_threads = VideoEncoderTuning {
                threads: Some(0),
                ..Default::default()
            };
            assert!(
                VideoEncoder::with_tuning(codec, &config(320, 240, 500_000, 0), &bad_threads)
                    .is_err()
            );
            // Tiny frames work.
            let mut enc = VideoEncoder::new(codec, &config(2, 2, 10_000, 0)).unwrap();
            let mut dec = VideoDecoder::new(codec).unwrap();
            let src = I420Buffer::test_pattern(2, 2, 0).unwrap();
            let out = enc.encode(&src.as_frame(), 0).unwrap();
            let pic = dec.decode(&out[0].data).unwrap().unwrap();
            assert_eq!((pic.width(), pic.height()), (2, 2));
        }
        #[cfg(not(feature = "h264"))]
        {
            assert!(matches!(
                VideoEncoder::new(VideoCodec::H264, &config(320, 240, 500_000, 0)),
                Err(Error::InvalidConfig(_))
            ));
            assert!(matches!(
                VideoDecoder::new(VideoCodec::H264),
                Err(Error::InvalidConfig(_))
            ));
        }
        assert!(libvpx_version().starts_with('v'));
        assert!(libopus_version().contains("libopus"));
    }

    #[test]
    fn media_video_decoder_follows_resolution_changes() {
        for codec in [VideoCodec::Vp8, VideoCodec::Vp9] {
            let mut dec = VideoDecoder::new(codec).unwrap();
            for (w, h) in [(320, 240), (640, 360), (160, 120)] {
                let mut enc = VideoEncoder::new(codec, &config(w, h, 500_000, 0)).unwrap();
                for i in 0..3 {
                    let src = I420Buffer::test_pattern(w, h, i).unwrap();
                    let out = enc.encode(&src.as_frame(), i as i64 * 33_333).unwrap();
                    let pic = dec.decode(&out[0].data).unwrap().unwrap();
                    assert_eq!((pic.width(), pic.height()), (w, h), "{codec:?}");
                }
            }
        }
    }

    #[test]
    fn media_video_decoded_odd_sizes_are_cropped_to_even() {
        // A 5x3 picture with padded strides, as a decoder of a browser's odd-sized stream
        // would hand it over: the packed output is 4x2.
        let mut y: Vec<u8> = (0..8 * 3).map(|i| i as u8).collect();
        let mut u: Vec<u8> = (100..100 + 4 * 2).collect();
        let mut v: Vec<u8> = (200..200 + 4 * 2).collect();
        // SAFETY (test): zero is valid for every field of vpx_image_t.
        let mut img: vpx::vpx_image_t = unsafe { std::mem::zeroed() };
        img.fmt = vpx::vpx_img_fmt::VPX_IMG_FMT_I420;
        img.bit_depth = 8;
        img.d_w = 5;
        img.d_h = 3;
        img.planes = [
            y.as_mut_ptr(),
            u.as_mut_ptr(),
            v.as_mut_ptr(),
            ptr::null_mut(),
        ];
        img.stride = [8, 4, 4, 0];
        let b = copy_vpx_image(&img, VideoCodec::Vp8).unwrap();
        assert_eq!((b.width(), b.height()), (4, 2));
        assert_eq!(b.y(), &[0, 1, 2, 3, 8, 9, 10, 11]);
        assert_eq!(b.u(), &[100, 101]);
        assert_eq!(b.v(), &[200, 201]);
        // A 1-pixel-wide picture can't be cropped; other formats and bad strides are refused.
        img.d_w = 1;
        assert!(matches!(
            copy_vpx_image(&img, VideoCodec::Vp8),
            Err(Error::Decoding(_))
        ));
        img.d_w = 4;
        img.stride = [2, 4, 4, 0];
        assert!(matches!(
            copy_vpx_image(&img, VideoCodec::Vp8),
            Err(Error::Decoding(_))
        ));
        img.stride = [8, 4, 4, 0];
        img.fmt = vpx::vpx_img_fmt::VPX_IMG_FMT_I444;
        assert!(matches!(
            copy_vpx_image(&img, VideoCodec::Vp9),
            Err(Error::Decoding(_))
        ));
    }

    #[test]
    fn media_codecs_are_send() {
        fn send<T: Send>() {}
        send::<OpusEncoder>();
        send::<OpusDecoder>();
        send::<VideoEncoder>();
        send::<VideoDecoder>();
    }

    #[cfg(feature = "h264")]
    #[test]
    fn media_h264_pattern_round_trip_and_keyframes() {
        let cfg = config(320, 240, 800_000, 10);
        let (psnr, frames) = round_trip(VideoCodec::H264, &cfg, 12);
        assert!(psnr > 30.0, "H.264 Y PSNR {psnr:.2} dB");
        let keys: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.keyframe)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(keys, vec![0, 10]);
        let mut enc = VideoEncoder::new(VideoCodec::H264, &cfg).unwrap();
        let src = I420Buffer::test_pattern(320, 240, 0).unwrap();
        enc.encode(&src.as_frame(), 0).unwrap();
        enc.force_keyframe();
        assert!(enc.encode(&src.as_frame(), 33_333).unwrap()[0].keyframe);
        enc.set_bitrate(200_000).unwrap();
        assert!(!enc.encode(&src.as_frame(), 66_666).unwrap()[0].keyframe);
        let mut dec = VideoDecoder::new(VideoCodec::H264).unwrap();
        assert!(matches!(dec.decode(&[]), Err(Error::InvalidData(_))));
        let _ = dec.decode(&[0, 0, 0, 1, 0x65, 0xff, 0xff]);
    }
}
