//! Giving freed memory back to the system after peers close.
//!
//! A peer connection allocates a few MB across tokio worker threads (codec state, SCTP and SRTP
//! buffers, socket buffers). glibc keeps what those threads free in per-thread arenas, so a
//! process that connects and closes peers for hours keeps the high-water mark of its busiest
//! moment as RSS (+38 % over 1 000 connect/close cycles, measured in BENCHMARKS.md), though
//! nothing leaks. `malloc_trim(0)` returns free pages of every arena. It runs on a blocking
//! thread, at most once per [`TRIM_DELAY`], that long after a peer closed (by then its tasks
//! have ended and dropped their memory), and every [`TRIM_EVERY`] while peers stream (media
//! buffers come and go on many threads: a 10-peer mesh streaming for 10 minutes grew 36 %
//! without it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a close the trim runs; closes within that time share one trim.
pub const TRIM_DELAY: Duration = Duration::from_secs(1);
/// How often a trim runs while peers are connected.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

static PERIODIC: AtomicBool = AtomicBool::new(false);
/// Peers connected now, in this process (they keep the periodic trim going).
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Held by each peer connection: the periodic trim runs while any exists (one task per process;
/// it ends after the last one is gone).
pub struct LivePeer(());

impl LivePeer {
    pub fn new() -> Self {
        peer_opened();
        LivePeer(())
    }
}

impl Default for LivePeer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LivePeer {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

fn peer_opened() {
    LIVE.fetch_add(1, Ordering::SeqCst);
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || PERIODIC.swap(true, Ordering::SeqCst)
    {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        PERIODIC.store(false, Ordering::SeqCst);
        return;
    };
    rt.spawn(async {
        loop {
            tokio::time::sleep(TRIM_EVERY).await;
            if LIVE.load(Ordering::SeqCst) == 0 {
                PERIODIC.store(false, Ordering::SeqCst);
                // A peer opened between the check and the store starts a new task.
                if LIVE.load(Ordering::SeqCst) == 0 || PERIODIC.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
            let _ = tokio::task::spawn_blocking(trim_now).await;
        }
    });
}

static PENDING: AtomicBool = AtomicBool::new(false);
static TRIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A peer connection closed: schedules a trim (no-op off glibc, or when one is already
/// scheduled).
pub fn after_close() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    if PENDING.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        PENDING.store(false, Ordering::SeqCst);
        return;
    };
    rt.spawn(async {
        tokio::time::sleep(TRIM_DELAY).await;
        PENDING.store(false, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(trim_now).await;
    });
}

/// Trims that have run in this process.
pub fn trims() -> u64 {
    TRIMS.load(Ordering::Relaxed)
}

fn trim_now() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and may be called from any thread.
        unsafe {
            malloc_trim(0);
        }
        TRIMS.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closes_close_together_share_one_trim_after_the_delay() {
        let before = trims();
        for _ in 0..5 {
            after_close();
        }
        tokio::time::sleep(TRIM_DELAY / 2).await;
        assert_eq!(trims(), before, "trimmed before the delay");
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let deadline = tokio::time::Instant::now() + TRIM_DELAY * 5;
            while trims() == before && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(TRIM_DELAY / 2).await;
            assert_eq!(trims(), before + 1, "five closes, one trim");
        }
    }
}
