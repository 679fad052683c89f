//! The `VideoScale` node: I420 downscaling for per-receiver quality tiers.
//!
//! Each plane is resized with an area (box) filter: an output pixel is the average of the source
//! area it covers, partial source pixels weighted by how much of them it covers. It is separable
//! (rows, then columns) and exact for any ratio. Frames already no larger than the target in both
//! dimensions pass unchanged: the node never upscales.

use serde_json::{Map, Value};

use super::nodes::{Frame, Node, NodeOutput, VideoFrame};
use crate::error::{Error, Result};
use crate::media::video::{check_dimensions, i420_len};

/// For each output index, the first source index and the weights of the source pixels it covers.
fn area_weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let s = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let (a, b) = (i as f64 * s, (i + 1) as f64 * s);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(src);
            let w = (first..last)
                .map(|j| {
                    let overlap = b.min(j as f64 + 1.0) - a.max(j as f64);
                    (overlap.max(0.0) / s) as f32
                })
                .collect();
            (first, w)
        })
        .collect()
}

/// Resizes one plane (`sw × sh`, packed) to `dw × dh`, appending to `out`.
fn scale_plane(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize, out: &mut Vec<u8>) {
    let hw = area_weights(sw, dw);
    let vw = area_weights(sh, dh);
    // Rows first: sh rows of dw columns.
    let mut rows = vec![0.0f32; sh * dw];
    for y in 0..sh {
        let line = &src[y * sw..(y + 1) * sw];
        for (x, (first, w)) in hw.iter().enumerate() {
            rows[y * dw + x] = w
                .iter()
                .zip(&line[*first..])
                .map(|(w, &p)| w * f32::from(p))
                .sum();
        }
    }
    for (first, w) in &vw {
        for x in 0..dw {
            let v: f32 = w
                .iter()
                .enumerate()
                .map(|(k, w)| w * rows[(first + k) * dw + x])
                .sum();
            out.push((v + 0.5).clamp(0.0, 255.0) as u8);
        }
    }
}

/// Resizes a packed I420 picture. [`Error::InvalidData`] for zero, odd or oversized dimensions or
/// a buffer whose length does not match its dimensions.
pub fn scale_i420(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Result<Vec<u8>> {
    let src_len = i420_len(sw, sh)?;
    let dst_len = i420_len(dw, dh)?;
    if src.len() != src_len {
        return Err(Error::InvalidData(format!(
            "I420 {sw}x{sh} needs {src_len} bytes, got {}",
            src.len()
        )));
    }
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    let (y_len, c_len) = (sw * sh, (sw / 2) * (sh / 2));
    let mut out = Vec::with_capacity(dst_len);
    scale_plane(&src[..y_len], sw, sh, dw, dh, &mut out);
    for plane in [&src[y_len..y_len + c_len], &src[y_len + c_len..]] {
        scale_plane(plane, sw / 2, sh / 2, dw / 2, dh / 2, &mut out);
    }
    Ok(out)
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct VideoScale {
    width: u32,
    height: u32,
}

impl VideoScale {
    /// [`Error::InvalidData`] for zero, odd or oversized target dimensions.
    pub fn new(width: u32, height: u32) -> Result<Self> {
        check_dimensions(width, height)?;
        Ok(VideoScale { width, height })
    }

    pub fn from_params(params: &Map<String, Value>) -> Result<Self> {
        let dim = |name: &str| {
            params
                .get(name)
                .and_then(Value::as_u64)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
                .ok_or_else(|| Error::InvalidData(format!("VideoScale needs param '{name}'")))
        };
        VideoScale::new(dim("width")?, dim("height")?)
    }

    pub fn target(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

impl Node for VideoScale {
    fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
        let v = match input {
            Frame::Video(v) => v,
            other => return Ok(vec![NodeOutput::Frame(other)]),
        };
        let fits = v.width <= self.width && v.height <= self.height;
        if fits {
            // Still reject malformed frames.
            let len = i420_len(v.width, v.height)?;
            if v.data.len() != len {
                return Err(Error::InvalidData(format!(
                    "I420 {}x{} needs {len} bytes, got {}",
                    v.width,
                    v.height,
                    v.data.len()
                )));
            }
            return Ok(vec![NodeOutput::Frame(Frame::Video(v))]);
        }
        let data = scale_i420(&v.data, v.width, v.height, self.width, self.height)?;
        Ok(vec![NodeOutput::Frame(Frame::Video(VideoFrame {
            data,
            width: self.width,
            height: self.height,
            ..v
        }))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packed I420 frame with `y(x, y)` for luma and constant chroma.
    fn frame(w: u32, h: u32, y: impl Fn(usize, usize) -> u8, u: u8, v: u8) -> Vec<u8> {
        let (wu, hu) = (w as usize, h as usize);
        let mut d = Vec::new();
        for row in 0..hu {
            for col in 0..wu {
                d.push(y(col, row));
            }
        }
        d.extend(std::iter::repeat_n(u, wu / 2 * hu / 2));
        d.extend(std::iter::repeat_n(v, wu / 2 * hu / 2));
        d
    }

    fn video(data: Vec<u8>, w: u32, h: u32) -> Frame {
        Frame::Video(VideoFrame {
            data,
            width: w,
            height: h,
            peer_id: Some("p".into()),
            timestamp_us: 33_000,
        })
    }

    fn only_video(out: Vec<NodeOutput>) -> VideoFrame {
        match out.as_slice() {
            [NodeOutput::Frame(Frame::Video(v))] => v.clone(),
            other => panic!("expected one video frame, got {other:?}"),
        }
    }

    #[test]
    fn halving_gives_the_right_plane_sizes_and_keeps_flat_colour() {
        let mut node = VideoScale::new(320, 180).unwrap();
        let out = only_video(
            node.process(video(frame(640, 360, |_, _| 100, 50, 200), 640, 360))
                .unwrap(),
        );
        assert_eq!((out.width, out.height), (320, 180));
        assert_eq!(out.data.len(), 320 * 180 + 2 * 160 * 90);
        assert_eq!(
            (out.peer_id.as_deref(), out.timestamp_us),
            (Some("p"), 33_000)
        );
        let (y, rest) = out.data.split_at(320 * 180);
        let (u, v) = rest.split_at(160 * 90);
        assert!(y.iter().all(|&p| p == 100));
        assert!(u.iter().all(|&p| p == 50));
        assert!(v.iter().all(|&p| p == 200));
    }

    #[test]
    fn box_filter_averages_a_known_pattern() {
        // 4x4 luma in 2x2 blocks of 10, 20 / 30, 40 → 2x2 of exactly those values.
        let blocks = [[10u8, 20], [30, 40]];
        let src = frame(4, 4, |x, y| blocks[y / 2][x / 2], 128, 128);
        let out = scale_i420(&src, 4, 4, 2, 2).unwrap();
        assert_eq!(&out[..4], &[10, 20, 30, 40]);
        assert_eq!(&out[4..], &[128, 128]);
        // A one-pixel checkerboard of 0 and 255 averages to mid-grey.
        let src = frame(8, 8, |x, y| if (x + y) % 2 == 0 { 0 } else { 255 }, 0, 0);
        let out = scale_i420(&src, 8, 8, 4, 4).unwrap();
        assert!(out[..16].iter().all(|&p| p == 128), "{:?}", &out[..16]);
    }

    #[test]
    fn non_integer_ratio_weights_partial_pixels() {
        // Row 0, 30, …, 150 scaled 6 → 4: each output covers 1.5 source pixels.
        let src = frame(6, 2, |x, _| (x * 30) as u8, 0, 0);
        let out = scale_i420(&src, 6, 2, 4, 2).unwrap();
        assert_eq!(&out[..4], &[10, 50, 100, 140]);
        assert_eq!(&out[4..8], &[10, 50, 100, 140]);
        assert_eq!(out.len(), 4 * 2 + 2 * 2);
    }

    #[test]
    fn smaller_frames_pass_and_events_pass() {
        let mut node = VideoScale::new(640, 360).unwrap();
        let small = frame(320, 180, |x, _| x as u8, 1, 2);
        let out = only_video(node.process(video(small.clone(), 320, 180)).unwrap());
        assert_eq!((out.width, out.height, out.data), (320, 180, small));
    }

    #[test]
    fn odd_zero_and_mismatched_sizes_are_invalid_data() {
        for (w, h) in [(321, 180), (320, 181), (0, 180)] {
            assert!(
                matches!(VideoScale::new(w, h), Err(Error::InvalidData(_))),
                "{w}x{h}"
            );
        }
        let src = frame(8, 8, |_, _| 0, 0, 0);
        assert!(matches!(
            scale_i420(&src, 8, 8, 3, 4),
            Err(Error::InvalidData(_))
        ));
        assert!(matches!(
            scale_i420(&src[1..], 8, 8, 4, 4),
            Err(Error::InvalidData(_))
        ));
        let mut node = VideoScale::new(4, 4).unwrap();
        assert!(matches!(
            node.process(video(src[..10].to_vec(), 8, 8)),
            Err(Error::InvalidData(_))
        ));
        assert!(matches!(
            node.process(video(vec![0; 5], 2, 2)),
            Err(Error::InvalidData(_))
        ));
    }
}
