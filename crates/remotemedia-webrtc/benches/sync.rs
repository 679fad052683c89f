//! Cost of the sync path per frame: one insert plus one pop, in steady state at a given buffer
//! depth (frames spaced so that `target / spacing = depth`), for the bare jitter buffer and for
//! the whole per-peer manager (clock mapping, drift and lip-sync bookkeeping included).
//!
//! `cargo bench -p remotemedia-webrtc --bench sync`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use remotemedia_webrtc::sync::{
    unix_us_to_ntp, JitterBuffer, JitterConfig, RtpFrame, SenderReport, StreamKind, SyncConfig,
    SyncManager,
};

const CLOCK: u32 = 90_000;
const TARGET_MS: u32 = 100;
const START_US: u64 = 1_700_000_000_000_000;

/// Frame `n` of a stream whose frames are `spacing_us` apart, with a little reordering (every
/// eighth pair swapped) so the reorder path is exercised too.
struct Source {
    n: u64,
    spacing_us: u64,
}

impl Source {
    fn frame_at(&self, n: u64) -> RtpFrame<u64> {
        let ticks = self.spacing_us * CLOCK as u64 / 1_000_000;
        RtpFrame::new(
            n as u16,
            (n * ticks) as u32,
            START_US + n * self.spacing_us + 1_000,
            n,
        )
    }

    fn next(&mut self) -> RtpFrame<u64> {
        let n = self.n;
        self.n += 1;
        // Swap frames 8k+3 and 8k+4.
        let k = match n % 8 {
            3 => n + 1,
            4 => n - 1,
            _ => n,
        };
        let mut f = self.frame_at(k);
        f.arrival_us = START_US + n * self.spacing_us + 1_000;
        f
    }
}

fn jitter_config(adaptive: bool) -> JitterConfig {
    JitterConfig {
        clock_rate: CLOCK,
        target_ms: TARGET_MS,
        min_target_ms: TARGET_MS,
        max_target_ms: TARGET_MS,
        hard_max_ms: 500,
        adaptive,
    }
}

fn bench_jitter(c: &mut Criterion) {
    let mut group = c.benchmark_group("jitter_insert_pop");
    group.throughput(Throughput::Elements(1));
    for depth in [10u64, 100] {
        let spacing_us = TARGET_MS as u64 * 1000 / depth;
        let mut buf = JitterBuffer::new(jitter_config(true));
        let mut src = Source { n: 0, spacing_us };
        // Warm up to the steady-state depth.
        for _ in 0..depth * 4 {
            let f = src.next();
            let now = f.arrival_us;
            buf.insert(f);
            while buf.pop(now).is_some() {}
        }
        assert!(
            buf.len() as u64 >= depth - 2 && buf.len() as u64 <= depth + 2,
            "depth {depth}: {} buffered",
            buf.len()
        );
        group.bench_with_input(BenchmarkId::from_parameter(depth), &depth, |b, _| {
            b.iter(|| {
                let f = src.next();
                let now = f.arrival_us;
                buf.insert(black_box(f));
                let mut out = 0u64;
                while let Some(o) = buf.pop(now) {
                    out += o.payload;
                }
                black_box(out)
            })
        });
        let s = buf.statistics();
        assert_eq!(s.lost + s.late + s.duplicates + s.discarded, 0, "{s:?}");
        assert!(s.buffered as u64 >= depth - 2 && s.buffered as u64 <= depth + 2);
    }
    group.finish();
}

fn bench_manager(c: &mut Criterion) {
    let mut group = c.benchmark_group("manager_video_insert_pop");
    group.throughput(Throughput::Elements(1));
    for depth in [10u64, 100] {
        let spacing_us = TARGET_MS as u64 * 1000 / depth;
        let config = SyncConfig {
            jitter_min_ms: TARGET_MS,
            jitter_max_ms: TARGET_MS,
            lip_sync: false,
            ..SyncConfig::default()
        };
        let mut sync = SyncManager::<u64, u64>::new(config).unwrap();
        let mut src = Source { n: 0, spacing_us };
        sync.update_rtcp_sender_report(
            StreamKind::Video,
            SenderReport::new(unix_us_to_ntp(START_US), 0, START_US + 1_000),
        )
        .unwrap();
        for _ in 0..depth * 4 {
            let f = src.next();
            let now = f.arrival_us;
            sync.process_video_frame(f);
            while sync.pop_next_video_frame(now).is_some() {}
        }
        group.bench_with_input(BenchmarkId::from_parameter(depth), &depth, |b, _| {
            b.iter(|| {
                let f = src.next();
                let now = f.arrival_us;
                sync.process_video_frame(black_box(f));
                let mut out = 0u64;
                while let Some(o) = sync.pop_next_video_frame(now) {
                    out += o.payload + o.wall_clock_us;
                }
                black_box(out)
            })
        });
        let s = sync.get_buffer_statistics().video;
        assert_eq!(s.lost + s.late + s.duplicates + s.discarded, 0, "{s:?}");
    }
    group.finish();
}

criterion_group!(benches, bench_jitter, bench_manager);
criterion_main!(benches);
