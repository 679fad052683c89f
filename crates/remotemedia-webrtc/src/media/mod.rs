//! The codec layer of the media path: raw frames in, encoded frames out, and back.
//!
//! - [`audio`]: [`AudioEncoderConfig`] and the frame-duration rules for PCM input.
//! - [`video`]: [`VideoEncoderConfig`], the borrowed [`I420Frame`] (input, any strides) and the
//!   owned, packed [`I420Buffer`] (output).
//! - [`codec`]: [`OpusEncoder`] / [`OpusDecoder`] (libopus through the `opus` crate) and
//!   [`VideoEncoder`] / [`VideoDecoder`] for VP8 and VP9 profile 0 (libvpx, linked statically from
//!   the system's libvpx-dev through `env-libvpx-sys`). With the cargo feature `h264` the same
//!   types also do H.264 (OpenH264, built from source by the `openh264` crate).
//! - [`vp9_descriptor`]: the VP9 RTP payload descriptor (RFC 9628), parsed per packet for the
//!   frame assembler.
//! - [`vpx_mem`]: libvpx's allocator, replaced (zero-filled blocks without `memset`, large
//!   blocks unmapped on free).
//!
//! Everything here is plain, synchronous Rust with no networking: RTP packetization and tracks
//! sit on top. All FFI is behind safe types; bad input gives an [`Error`](crate::Error)
//! (`InvalidData` for malformed frames or packets, `InvalidConfig` for bad settings,
//! `Encoding` / `Decoding` for codec failures) and never a panic. Every codec type is `Send`.

pub mod assembler;
pub mod audio;
pub mod codec;
pub mod keyframe;
pub mod playout;
pub mod track;
pub mod video;
pub mod vp9_descriptor;
pub mod vpx_mem;

pub use crate::config::VideoCodec;
pub use audio::{AudioEncoderConfig, FrameDuration, Pcm, OPUS_SAMPLE_RATE};
pub use codec::{
    libopus_version, libvpx_version, EncodedVideoFrame, OpusDecoder, OpusEncoder, VideoDecoder,
    VideoEncoder, VideoEncoderTuning, MAX_OPUS_FRAME_SAMPLES, MAX_OPUS_PACKET,
};
pub use video::{i420_len, psnr_y, I420Buffer, I420Frame, VideoEncoderConfig};
