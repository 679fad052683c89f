//! Video settings and I420 frames.
//!
//! I420 (YUV 4:2:0 planar, 8 bit): a full-resolution Y plane, then U and V at half width and
//! half height. Input frames are borrowed ([`I420Frame`]: three plane slices with their own
//! strides, e.g. straight from a decoder or a camera buffer, or one packed buffer from
//! JavaScript); output frames are owned and packed ([`I420Buffer`]: `Y | U | V`, no padding,
//! `width * height * 3 / 2` bytes), which is what `'video-frame'` hands to JavaScript.
//!
//! Width and height must be even and non-zero; every size is checked, so a malformed frame is
//! [`Error::InvalidData`], never a panic or an out-of-bounds read in the codec.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Largest width or height accepted (8K UHD width; libvpx's own limit is 16 383).
pub const MAX_DIMENSION: u32 = 7_680;
/// Video bitrate range, bits per second.
pub const MIN_VIDEO_BITRATE: u32 = 10_000;
pub const MAX_VIDEO_BITRATE: u32 = 100_000_000;
pub const MAX_FRAMERATE: u32 = 240;
pub const MAX_KEYFRAME_INTERVAL: u32 = 10_000;

/// What `peer.addVideoTrack(config)` takes (docs/spec/api.md), in Rust. Bad fields are
/// [`Error::InvalidConfig`] naming the field and its allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VideoEncoderConfig {
    /// Pixels, even, 2..=7680.
    pub width: u32,
    /// Pixels, even, 2..=7680.
    pub height: u32,
    /// Frames per second, 1..=240 (the rate control's nominal rate).
    pub framerate: u32,
    /// Target bitrate, bits per second, 10 000..=100 000 000.
    pub bitrate: u32,
    /// A keyframe every this many frames; 0 = only the first frame and requested ones
    /// (`force_keyframe`, i.e. PLI/FIR). At most 10 000.
    pub keyframe_interval: u32,
}

impl Default for VideoEncoderConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            framerate: 30,
            bitrate: 2_000_000,
            keyframe_interval: 60,
        }
    }
}

impl VideoEncoderConfig {
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if !(2..=MAX_DIMENSION).contains(&v) || !v.is_multiple_of(2) {
                return Err(Error::InvalidConfig(format!(
                    "{name} must be even and 2..={MAX_DIMENSION}, got {v}"
                )));
            }
        }
        if self.framerate == 0 || self.framerate > MAX_FRAMERATE {
            return Err(Error::InvalidConfig(format!(
                "framerate must be 1..={MAX_FRAMERATE}, got {}",
                self.framerate
            )));
        }
        validate_video_bitrate(self.bitrate)?;
        if self.keyframe_interval > MAX_KEYFRAME_INTERVAL {
            return Err(Error::InvalidConfig(format!(
                "keyframeInterval must be 0..={MAX_KEYFRAME_INTERVAL} frames (0 = on request only), got {}",
                self.keyframe_interval
            )));
        }
        Ok(())
    }

    /// Bytes of one packed I420 frame of this size.
    pub fn frame_size(&self) -> usize {
        packed_len(self.width, self.height)
    }
}

pub(crate) fn validate_video_bitrate(bitrate: u32) -> Result<()> {
    if (MIN_VIDEO_BITRATE..=MAX_VIDEO_BITRATE).contains(&bitrate) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "bitrate must be {MIN_VIDEO_BITRATE}..={MAX_VIDEO_BITRATE} bits/s, got {bitrate}"
        )))
    }
}

/// Checks frame dimensions: non-zero, even, at most [`MAX_DIMENSION`].
pub fn check_dimensions(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidData(format!(
            "I420 frame dimensions must be non-zero, got {width}x{height}"
        )));
    }
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(Error::InvalidData(format!(
            "I420 frame dimensions must be even, got {width}x{height}"
        )));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(Error::InvalidData(format!(
            "I420 frame dimensions must be at most {MAX_DIMENSION}, got {width}x{height}"
        )));
    }
    Ok(())
}

/// Bytes of a packed I420 frame (dimensions assumed checked: even, ≤ 7680).
fn packed_len(width: u32, height: u32) -> usize {
    let (w, h) = (width as usize, height as usize);
    w * h + 2 * (w / 2) * (h / 2)
}

/// Size of a packed I420 frame, or [`Error::InvalidData`] for bad dimensions.
pub fn i420_len(width: u32, height: u32) -> Result<usize> {
    check_dimensions(width, height)?;
    Ok(packed_len(width, height))
}

/// The rule for a packed I420 buffer (`Y | U | V`, no padding) of `len` bytes: its dimensions
/// as [`check_dimensions`], and exactly their size. The size, or [`Error::InvalidData`].
pub fn check_packed(width: u32, height: u32, len: usize) -> Result<usize> {
    let need = i420_len(width, height)?;
    if len != need {
        return Err(Error::InvalidData(format!(
            "an I420 frame of {width}x{height} is {need} bytes, got {len}"
        )));
    }
    Ok(need)
}

/// A borrowed I420 frame: three planes with their own strides (bytes from one row to the next).
/// A plane must hold `stride * (rows - 1) + row_width` bytes at least; the padding after each
/// row is never read.
#[derive(Debug, Clone, Copy)]
pub struct I420Frame<'a> {
    width: u32,
    height: u32,
    planes: [&'a [u8]; 3],
    strides: [usize; 3],
}

impl<'a> I420Frame<'a> {
    /// Planes with explicit strides. Errors ([`Error::InvalidData`]) name the plane and the
    /// size it needs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        width: u32,
        height: u32,
        y: &'a [u8],
        y_stride: usize,
        u: &'a [u8],
        u_stride: usize,
        v: &'a [u8],
        v_stride: usize,
    ) -> Result<Self> {
        check_dimensions(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let dims = [(w, h), (w / 2, h / 2), (w / 2, h / 2)];
        let planes = [y, u, v];
        let strides = [y_stride, u_stride, v_stride];
        for (i, name) in ["Y", "U", "V"].into_iter().enumerate() {
            let (pw, ph) = dims[i];
            if strides[i] < pw {
                return Err(Error::InvalidData(format!(
                    "{name} plane stride {} is less than its width {pw} ({width}x{height} frame)",
                    strides[i]
                )));
            }
            let needed = strides[i]
                .checked_mul(ph - 1)
                .and_then(|n| n.checked_add(pw))
                .ok_or_else(|| Error::InvalidData(format!("{name} plane stride too large")))?;
            if planes[i].len() < needed {
                return Err(Error::InvalidData(format!(
                    "{name} plane has {} bytes, a {width}x{height} frame with stride {} needs {needed}",
                    planes[i].len(),
                    strides[i]
                )));
            }
        }
        Ok(Self {
            width,
            height,
            planes,
            strides,
        })
    }

    /// One packed buffer `Y | U | V` with no padding, as JavaScript sends it
    /// (`{ data, width, height, format: 'i420' }`): exactly `width * height * 3 / 2` bytes.
    pub fn from_packed(width: u32, height: u32, data: &'a [u8]) -> Result<Self> {
        check_packed(width, height, data.len())?;
        let (w, h) = (width as usize, height as usize);
        let (y, rest) = data.split_at(w * h);
        let (u, v) = rest.split_at((w / 2) * (h / 2));
        Self::new(width, height, y, w, u, w / 2, v, w / 2)
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn y(&self) -> &'a [u8] {
        self.planes[0]
    }
    pub fn u(&self) -> &'a [u8] {
        self.planes[1]
    }
    pub fn v(&self) -> &'a [u8] {
        self.planes[2]
    }
    /// Strides of Y, U and V.
    pub fn strides(&self) -> [usize; 3] {
        self.strides
    }

    /// Row `row` of plane `plane` (0 = Y, 1 = U, 2 = V), without padding.
    fn row(&self, plane: usize, row: usize) -> &'a [u8] {
        let w = if plane == 0 {
            self.width as usize
        } else {
            self.width as usize / 2
        };
        let start = row * self.strides[plane];
        &self.planes[plane][start..start + w]
    }

    /// A packed, owned copy.
    pub fn to_buffer(&self) -> I420Buffer {
        let mut data = Vec::with_capacity(packed_len(self.width, self.height));
        for plane in 0..3 {
            let rows = if plane == 0 {
                self.height as usize
            } else {
                self.height as usize / 2
            };
            for r in 0..rows {
                data.extend_from_slice(self.row(plane, r));
            }
        }
        I420Buffer {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// An owned, packed I420 frame: `Y | U | V`, no padding, exactly `width * height * 3 / 2` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Buffer {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for I420Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Buffer")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("len", &self.data.len())
            .finish()
    }
}

impl I420Buffer {
    /// Takes a packed buffer; its length must be exactly `width * height * 3 / 2`.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        I420Frame::from_packed(width, height, &data)?;
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A black frame (Y = 16, U = V = 128).
    pub fn black(width: u32, height: u32) -> Result<Self> {
        let len = i420_len(width, height)?;
        let y = width as usize * height as usize;
        let mut data = vec![128u8; len];
        data[..y].fill(16);
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A moving test pattern for frame `index`: diagonal luma gradient with a fine texture that
    /// pans 2 px per frame (so the encoder has real detail and motion to code), chroma gradients
    /// and a bright checkered square that moves 4 px right and 2 px down per frame (wrapping).
    /// Deterministic.
    pub fn test_pattern(width: u32, height: u32, index: u32) -> Result<Self> {
        let mut buf = Self::black(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let t = index as usize;
        let side = (w.min(h) / 4).max(2) & !1;
        let sx = ((t * 4) % w.saturating_sub(side).max(1)) & !1;
        let sy = ((t * 2) % h.saturating_sub(side).max(1)) & !1;
        let (y, u, v) = buf.planes_mut();
        for r in 0..h {
            let row = &mut y[r * w..(r + 1) * w];
            for (c, px) in row.iter_mut().enumerate() {
                let inside = c >= sx && c < sx + side && r >= sy && r < sy + side;
                *px = if inside {
                    if ((c - sx) / 8 + (r - sy) / 8).is_multiple_of(2) {
                        235
                    } else {
                        180
                    }
                } else {
                    let texture = (texture_noise(c + 2 * t, r) % 10) as usize;
                    (16 + ((c * 160 / w + r * 60 / h + t) % 190) + texture) as u8
                };
            }
        }
        let (cw, ch) = (w / 2, h / 2);
        for r in 0..ch {
            for c in 0..cw {
                let inside = 2 * c >= sx && 2 * c < sx + side && 2 * r >= sy && 2 * r < sy + side;
                u[r * cw + c] = if inside {
                    64
                } else {
                    (64 + c * 128 / cw.max(1)) as u8
                };
                v[r * cw + c] = if inside {
                    192
                } else {
                    (64 + r * 128 / ch.max(1)) as u8
                };
            }
        }
        Ok(buf)
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    /// The packed bytes `Y | U | V`.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
    fn split(&self) -> (usize, usize) {
        let y = self.width as usize * self.height as usize;
        (y, y / 4)
    }
    pub fn y(&self) -> &[u8] {
        let (y, _) = self.split();
        &self.data[..y]
    }
    pub fn u(&self) -> &[u8] {
        let (y, c) = self.split();
        &self.data[y..y + c]
    }
    pub fn v(&self) -> &[u8] {
        let (y, c) = self.split();
        &self.data[y + c..]
    }
    /// Mutable Y, U and V planes.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (y, c) = self.split();
        let (yp, rest) = self.data.split_at_mut(y);
        let (up, vp) = rest.split_at_mut(c);
        (yp, up, vp)
    }

    /// A borrowed view for encoding.
    pub fn as_frame(&self) -> I420Frame<'_> {
        let w = self.width as usize;
        I420Frame {
            width: self.width,
            height: self.height,
            planes: [self.y(), self.u(), self.v()],
            strides: [w, w / 2, w / 2],
        }
    }

    /// Builds a packed buffer from planes with strides (e.g. a decoder's output), copying row
    /// by row.
    pub fn from_frame(frame: &I420Frame<'_>) -> Self {
        frame.to_buffer()
    }
}

/// A deterministic hash of a pixel position, for test-pattern texture.
fn texture_noise(x: usize, y: usize) -> u32 {
    let mut h = (x as u32).wrapping_mul(0x9e37_79b1) ^ (y as u32).wrapping_mul(0x85eb_ca77);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^ (h >> 12)
}

/// PSNR of the Y planes of two frames of the same size, in dB (`f64::INFINITY` if identical).
pub fn psnr_y(a: &I420Frame<'_>, b: &I420Frame<'_>) -> Result<f64> {
    if a.width != b.width || a.height != b.height {
        return Err(Error::InvalidData(format!(
            "PSNR of frames of different sizes: {}x{} and {}x{}",
            a.width, a.height, b.width, b.height
        )));
    }
    let mut sse: u64 = 0;
    for r in 0..a.height as usize {
        for (x, y) in a.row(0, r).iter().zip(b.row(0, r)) {
            let d = *x as i64 - *y as i64;
            sse += (d * d) as u64;
        }
    }
    if sse == 0 {
        return Ok(f64::INFINITY);
    }
    let mse = sse as f64 / (a.width as f64 * a.height as f64);
    Ok(10.0 * (255.0 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_data<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::InvalidData(m)) => m,
            other => panic!("expected InvalidData, got {other:?}"),
        }
    }

    #[test]
    fn media_video_config_validation_names_fields() {
        VideoEncoderConfig::default().validate().unwrap();
        let cases: [(VideoEncoderConfig, &str); 8] = [
            (
                VideoEncoderConfig {
                    width: 0,
                    ..Default::default()
                },
                "width",
            ),
            (
                VideoEncoderConfig {
                    width: 641,
                    ..Default::default()
                },
                "width",
            ),
            (
                VideoEncoderConfig {
                    height: 7682,
                    ..Default::default()
                },
                "height",
            ),
            (
                VideoEncoderConfig {
                    framerate: 0,
                    ..Default::default()
                },
                "framerate",
            ),
            (
                VideoEncoderConfig {
                    framerate: 241,
                    ..Default::default()
                },
                "framerate",
            ),
            (
                VideoEncoderConfig {
                    bitrate: 9_999,
                    ..Default::default()
                },
                "bitrate",
            ),
            (
                VideoEncoderConfig {
                    bitrate: 100_000_001,
                    ..Default::default()
                },
                "bitrate",
            ),
            (
                VideoEncoderConfig {
                    keyframe_interval: 10_001,
                    ..Default::default()
                },
                "keyframeInterval",
            ),
        ];
        for (c, field) in cases {
            match c.validate() {
                Err(Error::InvalidConfig(m)) => assert!(m.contains(field), "{m}"),
                other => panic!("{c:?}: {other:?}"),
            }
        }
        let c: VideoEncoderConfig =
            serde_json::from_str(r#"{"width":640,"height":480,"keyframeInterval":0}"#).unwrap();
        assert_eq!(
            (c.width, c.height, c.framerate, c.keyframe_interval),
            (640, 480, 30, 0)
        );
        c.validate().unwrap();
    }

    #[test]
    fn media_video_packed_frame_sizes_are_checked() {
        assert_eq!(i420_len(320, 240).unwrap(), 115_200);
        let ok = vec![0u8; 115_200];
        let f = I420Frame::from_packed(320, 240, &ok).unwrap();
        assert_eq!(
            (f.y().len(), f.u().len(), f.v().len()),
            (76_800, 19_200, 19_200)
        );
        assert!(invalid_data(I420Frame::from_packed(320, 240, &ok[..115_199])).contains("115200"));
        let mut long = ok.clone();
        long.push(0);
        invalid_data(I420Frame::from_packed(320, 240, &long));
        assert!(invalid_data(I420Frame::from_packed(321, 240, &ok)).contains("even"));
        assert!(invalid_data(I420Frame::from_packed(320, 241, &ok)).contains("even"));
        assert!(invalid_data(I420Frame::from_packed(0, 240, &ok)).contains("non-zero"));
        assert!(invalid_data(I420Frame::from_packed(320, 0, &[])).contains("non-zero"));
        invalid_data(I420Frame::from_packed(8_000, 2, &ok));
        invalid_data(I420Frame::from_packed(u32::MAX - 1, u32::MAX - 1, &ok));
        invalid_data(I420Buffer::new(4, 4, vec![0; 23]));
        I420Buffer::new(4, 4, vec![0; 24]).unwrap();
    }

    #[test]
    fn media_video_strided_planes_are_checked_and_packed() {
        // 4x2 frame, Y stride 6, chroma stride 3: the last row needs only `width` bytes.
        let y = [1, 2, 3, 4, 99, 99, 5, 6, 7, 8];
        let u = [10, 11];
        let v = [20, 21, 99];
        let f = I420Frame::new(4, 2, &y, 6, &u, 3, &v, 3).unwrap();
        let b = f.to_buffer();
        assert_eq!(b.data(), &[1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 20, 21]);
        assert_eq!(b.as_frame().strides(), [4, 2, 2]);
        assert_eq!(psnr_y(&f, &b.as_frame()).unwrap(), f64::INFINITY);
        // Too short, stride below width, huge stride.
        assert!(invalid_data(I420Frame::new(4, 2, &y[..9], 6, &u, 3, &v, 3)).contains("Y plane"));
        assert!(invalid_data(I420Frame::new(4, 2, &y, 3, &u, 3, &v, 3)).contains("stride"));
        assert!(invalid_data(I420Frame::new(4, 2, &y, 6, &u, 1, &v, 3)).contains("U plane"));
        assert!(invalid_data(I420Frame::new(4, 2, &y, 6, &u, 3, &[], 3)).contains("V plane"));
        invalid_data(I420Frame::new(4, 4, &y, usize::MAX, &u, 3, &v, 3));
        invalid_data(I420Frame::new(3, 2, &y, 6, &u, 3, &v, 3));
    }

    #[test]
    fn media_video_test_pattern_moves() {
        let a = I420Buffer::test_pattern(64, 48, 0).unwrap();
        let b = I420Buffer::test_pattern(64, 48, 1).unwrap();
        assert_eq!(a.data().len(), i420_len(64, 48).unwrap());
        assert_ne!(a.data(), b.data());
        let p = psnr_y(&a.as_frame(), &b.as_frame()).unwrap();
        assert!(p.is_finite() && p > 0.0);
        invalid_data(psnr_y(
            &a.as_frame(),
            &I420Buffer::black(32, 48).unwrap().as_frame(),
        ));
        // Tiny frames work too.
        I420Buffer::test_pattern(2, 2, 7).unwrap();
    }
}
