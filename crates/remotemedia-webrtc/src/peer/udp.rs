//! UDP socket sizing for peer connections.
//!
//! SCTP lets a sender keep up to the receiver's window (1 MiB by default in webrtc-rs) in flight,
//! but a UDP socket keeps the kernel's default receive buffer (~208 KB): bursts overflow it, the
//! kernel drops datagrams and SCTP waits out 1 s retransmission timers (measured: ~1 000 drops
//! per 64 MiB transfer on loopback, throughput at 0.4× node-datachannel). So every peer socket
//! asks for [`WANT_BUFFER`], and the SCTP window is sized from what the kernel actually grants
//! (it caps requests at `net.core.rmem_max`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Receive and send buffer asked for on every peer socket.
pub const WANT_BUFFER: usize = 4 * 1024 * 1024;
/// webrtc-rs's default SCTP receive window.
pub const DEFAULT_SCTP_WINDOW: usize = 1024 * 1024;

/// Applies the buffer sizes to a socket; best effort (the kernel may grant less).
pub fn tune(socket: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(WANT_BUFFER);
    let _ = s.set_send_buffer_size(WANT_BUFFER);
}

/// The receive buffer the kernel grants a tuned socket, probed once per process.
pub fn granted_recv_buffer() -> usize {
    static GRANTED: OnceLock<usize> = OnceLock::new();
    *GRANTED.get_or_init(|| {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .ok()
            .and_then(|s| {
                tune(&s);
                socket2::SockRef::from(&s).recv_buffer_size().ok()
            })
            .unwrap_or(212_992)
    })
}

/// The SCTP receive window for a socket buffer of `granted` bytes (as the kernel reports it:
/// about half is payload, the rest bookkeeping), never below one maximal message, never above
/// webrtc-rs's default.
pub fn sctp_window(granted: usize, max_message_size: usize) -> u32 {
    (granted / 2)
        .max(max_message_size)
        .min(DEFAULT_SCTP_WINDOW.max(max_message_size)) as u32
}

/// When a peer connection's sockets last received a datagram, and a wake-up when datagrams
/// come again after a silence of at least [`LinkActivity::SILENCE`] (a link that was cut and is
/// back). Fed by every datagram the peer's sockets receive (`handshake_filter::FilteredSocket`);
/// read by the SCTP retransmission-timeout probe (`channel::keep_rto_fresh`).
#[derive(Debug)]
pub struct LinkActivity {
    base: Instant,
    /// Milliseconds from `base` to the last datagram, plus one (0: none yet).
    last: AtomicU64,
    /// The same for the last datagram before the latest silence.
    silence_from: AtomicU64,
    resumed: tokio::sync::Notify,
}

impl Default for LinkActivity {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            last: AtomicU64::new(0),
            silence_from: AtomicU64::new(0),
            resumed: tokio::sync::Notify::new(),
        }
    }
}

impl LinkActivity {
    /// A gap between datagrams this long means the link was gone: SCTP's smallest
    /// retransmission timeout (RTO.min in rtc-sctp is 1 s).
    pub const SILENCE: Duration = Duration::from_secs(1);

    /// Records datagrams received at `now`; wakes [`resumed`](Self::resumed) after a silence.
    pub fn on_datagram(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.base).as_millis() as u64 + 1;
        let prev = self.last.swap(ms, Ordering::Relaxed);
        if prev != 0 && ms.saturating_sub(prev) >= Self::SILENCE.as_millis() as u64 {
            self.silence_from.store(prev, Ordering::Relaxed);
            // Stores a permit when nobody waits, so a resumption is never missed.
            self.resumed.notify_one();
        }
    }

    /// Resolves when datagrams arrive again after a silence, with the time of the last
    /// datagram before it.
    pub async fn resumed(&self) -> Instant {
        self.resumed.notified().await;
        let ms = self.silence_from.load(Ordering::Relaxed).saturating_sub(1);
        self.base + Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn link_activity_wakes_only_after_a_silence() {
        let link = LinkActivity::default();
        let t0 = Instant::now();
        link.on_datagram(t0);
        link.on_datagram(t0 + Duration::from_millis(900));
        let woken = tokio::time::timeout(Duration::from_millis(20), link.resumed()).await;
        assert!(woken.is_err(), "900 ms between datagrams is no silence");
        link.on_datagram(t0 + Duration::from_millis(2000));
        let woken = tokio::time::timeout(Duration::from_millis(20), link.resumed()).await;
        let from = woken.expect("1.1 s without datagrams is a silence");
        let since = from.saturating_duration_since(t0).as_millis();
        assert!((899..=901).contains(&since), "silence from {since} ms");
    }

    #[test]
    fn window_fits_the_socket_buffer_but_holds_a_whole_message() {
        // A distribution that caps buffers at 208 KB: window shrinks, but not below a message.
        assert_eq!(sctp_window(425_984, 64 * 1024), 212_992);
        assert_eq!(sctp_window(425_984, 256 * 1024), 256 * 1024);
        // Plenty of buffer: webrtc-rs's default window.
        assert_eq!(sctp_window(8 * 1024 * 1024, 256 * 1024), 1024 * 1024);
        // Messages larger than the default window still fit.
        assert_eq!(
            sctp_window(8 * 1024 * 1024, 4 * 1024 * 1024),
            4 * 1024 * 1024
        );
    }

    #[test]
    fn tuned_sockets_get_a_larger_buffer_than_the_default() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = socket2::SockRef::from(&s).recv_buffer_size().unwrap();
        tune(&s);
        let after = socket2::SockRef::from(&s).recv_buffer_size().unwrap();
        // Never smaller; larger wherever rmem_max allows more than the default.
        assert!(after >= before);
        assert_eq!(granted_recv_buffer(), after);
    }
}
