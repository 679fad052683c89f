//! libvpx allocates through the crate's own `vpx_mem` (lazily zeroed, unmapped on free) in a
//! binary that links the crate as a library, as the Node addon and these tests do.

#![cfg(target_os = "linux")]

use remotemedia_webrtc::media::vpx_mem::stats;
use remotemedia_webrtc::media::{
    psnr_y, I420Buffer, VideoCodec, VideoDecoder, VideoEncoder, VideoEncoderConfig,
};

#[test]
fn libvpx_allocates_and_frees_through_the_crates_vpx_mem() {
    let config = VideoEncoderConfig {
        width: 1280,
        height: 720,
        framerate: 30,
        bitrate: 2_000_000,
        keyframe_interval: 0,
    };
    for codec in [VideoCodec::Vp8, VideoCodec::Vp9] {
        let before = stats();
        let mut enc = VideoEncoder::new(codec, &config).unwrap();
        let created = stats();
        assert!(
            created.allocations > before.allocations,
            "{codec:?}: the encoder allocated nothing through vpx_mem: libvpx's own was linked"
        );
        // The VP9 token buffer alone is tens of MB: mapped, not on the heap.
        if codec == VideoCodec::Vp9 {
            assert!(
                created.mapped_bytes >= before.mapped_bytes + 40_000_000,
                "{codec:?}: {created:?}"
            );
        }
        let mut dec = VideoDecoder::new(codec).unwrap();
        let mut decoded = 0;
        for i in 0..5 {
            let frame = I420Buffer::test_pattern(1280, 720, i).unwrap();
            for f in enc.encode(&frame.as_frame(), i as i64 * 33_333).unwrap() {
                if let Some(p) = dec.decode(&f.data).unwrap() {
                    assert!(psnr_y(&frame.as_frame(), &p.as_frame()).unwrap() > 30.0);
                    decoded += 1;
                }
            }
        }
        assert_eq!(decoded, 5, "{codec:?}");
        let used = stats();
        drop(enc);
        drop(dec);
        let dropped = stats();
        // (The only test in this binary: nothing else allocates through vpx_mem meanwhile.)
        assert_eq!(
            (dropped.mapped_bytes, dropped.heap_bytes),
            (before.mapped_bytes, before.heap_bytes),
            "{codec:?}: libvpx memory still allocated after dropping encoder and decoder"
        );
        assert_eq!(
            dropped.allocations - before.allocations,
            dropped.frees - before.frees
        );
        eprintln!(
            "{codec:?}: encoder init {} blocks, {:.1} MB mapped, {:.1} MB heap; 5 frames + \
             decoder: {} more blocks",
            created.allocations - before.allocations,
            (created.mapped_bytes - before.mapped_bytes) as f64 / 1e6,
            (created.heap_bytes - before.heap_bytes) as f64 / 1e6,
            used.allocations - created.allocations
        );
    }
}
