//! Keeps DTLS handshakes alive under packet loss (webrtc-rs 0.21.1 workaround).
//!
//! rtc-dtls 0.21.1 clears a handshake's retransmission timer whenever a handshake datagram
//! arrives, even if the datagram completes nothing. When a flight is lost, the peer's timer
//! resends its own previous flight. The side whose flight was lost receives that duplicate,
//! its timer is cleared, and it never resends. Both sides then wait until the peer gives up
//! after 7 retransmissions, and the connection fails. With 10 % random loss this stalled most
//! connection attempts (found by the netns loss test).
//!
//! The filter drops a datagram before rtc-dtls sees it when every record in it is an epoch-0
//! handshake fragment this socket has already received from the same address. Such a datagram
//! carries nothing new, and without it the side's own timer stays armed and resends the lost
//! flight. Two kinds always pass:
//! - A ClientHello with message_seq 0, because the server's HelloVerifyRequest flight has no
//!   timer and answers it statelessly. Its arrival also starts a new association, so it
//!   forgets the fragments seen before.
//! - Anything holding a ChangeCipherSpec or an encrypted record: a completed side answers a
//!   repeat of the peer's final flight (RFC 6347 4.2.4), and those flights carry both.
//!
//! The socket also replays an unanswered first ClientHello ([`HelloReplay`]). A remote DTLS
//! client may send it the moment its own ICE is up; when it arrives before webrtc-rs's ICE has
//! selected the pair, webrtc-rs drops it ("drop message … before ICE connection is
//! connected") and the handshake waits for the client's retransmission, 1 s later
//! (libdatachannel: every connect). A ClientHello the stack has not answered (sent nothing
//! DTLS to that address) within 15 ms is delivered again, at most 6 times, 15, 45, 105, 225,
//! 465 and 945 ms after it came (webrtc-rs's ICE, controlling, may take 200 ms more to select
//! the pair). An answered one never is, and a repeat is harmless anyway: a server answers
//! a first ClientHello statelessly (RFC 6347 §4.2.1).

use super::udp::LinkActivity;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Transmit};

const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
/// Sources remembered per socket, and fragments per source: a handshake has about a dozen.
const MAX_SOURCES: usize = 64;
const MAX_FRAGMENTS: usize = 256;

/// (message_seq, fragment_offset, fragment_length) of one handshake fragment.
type FragmentId = (u16, u32, u32);

/// What one datagram holds, as far as the filter cares.
#[derive(Debug, PartialEq, Eq)]
enum Datagram {
    /// Not DTLS, or not only epoch-0 handshake records: always delivered.
    Other,
    /// Only epoch-0 handshake fragments.
    Handshake {
        fragments: Vec<FragmentId>,
        first_client_hello: bool,
    },
}

fn be(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, &x| (acc << 8) | x as u32)
}

fn classify(d: &[u8]) -> Datagram {
    // RFC 7983: DTLS datagrams start with 20..=63. Anything else (STUN, RTP, TURN) passes.
    if d.is_empty() || !(20..=63).contains(&d[0]) {
        return Datagram::Other;
    }
    let mut fragments = Vec::new();
    let mut first_client_hello = false;
    let mut rest = d;
    while !rest.is_empty() {
        if rest.len() < RECORD_HEADER {
            return Datagram::Other;
        }
        let content = rest[0];
        let epoch = be(&rest[3..5]);
        let len = be(&rest[11..13]) as usize;
        if content != CONTENT_HANDSHAKE || epoch != 0 || rest.len() < RECORD_HEADER + len {
            return Datagram::Other;
        }
        let body = &rest[RECORD_HEADER..RECORD_HEADER + len];
        // A record may carry several handshake fragments back to back.
        let mut b = body;
        while !b.is_empty() {
            if b.len() < HANDSHAKE_HEADER {
                return Datagram::Other;
            }
            let msg_type = b[0];
            let seq = be(&b[4..6]) as u16;
            let offset = be(&b[6..9]);
            let frag_len = be(&b[9..12]);
            if b.len() < HANDSHAKE_HEADER + frag_len as usize {
                return Datagram::Other;
            }
            if msg_type == CLIENT_HELLO && seq == 0 {
                first_client_hello = true;
            }
            fragments.push((seq, offset, frag_len));
            b = &b[HANDSHAKE_HEADER + frag_len as usize..];
        }
        rest = &rest[RECORD_HEADER + len..];
    }
    if fragments.is_empty() {
        return Datagram::Other;
    }
    Datagram::Handshake {
        fragments,
        first_client_hello,
    }
}

/// The fragments received per source address; decides what to deliver.
#[derive(Default)]
pub struct HandshakeFilter {
    seen: HashMap<SocketAddr, HashSet<FragmentId>>,
}

impl HandshakeFilter {
    /// Whether a datagram from `from` should reach the DTLS stack; records what it holds.
    pub fn deliver(&mut self, from: SocketAddr, datagram: &[u8]) -> bool {
        let Datagram::Handshake {
            fragments,
            first_client_hello,
        } = classify(datagram)
        else {
            return true;
        };
        if first_client_hello {
            self.seen.remove(&from);
        }
        if !self.seen.contains_key(&from) && self.seen.len() >= MAX_SOURCES {
            // Bounded memory: forget everyone rather than refuse to learn a new source.
            self.seen.clear();
        }
        let seen = self.seen.entry(from).or_default();
        let duplicate = !first_client_hello && fragments.iter().all(|f| seen.contains(f));
        if seen.len() + fragments.len() <= MAX_FRAGMENTS {
            seen.extend(fragments);
        }
        !duplicate
    }
}

/// The first ClientHello received and not answered yet, replayed until it is (see the module
/// documentation). Pure bookkeeping; the socket does the I/O.
#[derive(Default)]
pub struct HelloReplay {
    pending: Option<PendingHello>,
}

struct PendingHello {
    from: SocketAddr,
    datagram: Vec<u8>,
    meta: RecvMeta,
    due: Instant,
    replays: u32,
}

/// Replays of one ClientHello, and the first delay (doubling after each).
const HELLO_REPLAYS: u32 = 6;
const HELLO_REPLAY_AFTER: Duration = Duration::from_millis(15);

impl HelloReplay {
    /// A first ClientHello came from `meta.addr` at `now`.
    pub fn on_client_hello(&mut self, datagram: &[u8], meta: RecvMeta, now: Instant) {
        self.pending = Some(PendingHello {
            from: meta.addr,
            datagram: datagram.to_vec(),
            meta,
            due: now + HELLO_REPLAY_AFTER,
            replays: 0,
        });
    }

    /// The stack sends `contents` to `to`: DTLS to the ClientHello's sender answers it.
    pub fn on_send(&mut self, to: SocketAddr, contents: &[u8]) {
        let dtls = contents.first().is_some_and(|b| (20..=63).contains(b));
        if dtls && self.pending.as_ref().is_some_and(|p| p.from == to) {
            self.pending = None;
        }
    }

    /// The ClientHello to deliver again now, if one is due.
    pub fn due(&mut self, now: Instant) -> Option<(Vec<u8>, RecvMeta)> {
        let p = self.pending.as_mut()?;
        if now < p.due {
            return None;
        }
        let out = (p.datagram.clone(), p.meta);
        p.replays += 1;
        if p.replays >= HELLO_REPLAYS {
            self.pending = None;
        } else {
            p.due = now + HELLO_REPLAY_AFTER * 2u32.pow(p.replays);
        }
        Some(out)
    }

    /// When the next replay is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.due)
    }
}

/// A UDP socket that passes received datagrams through a [`HandshakeFilter`].
/// It also tells the peer's [`LinkActivity`] about every datagram received.
pub struct FilteredSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    filter: Mutex<HandshakeFilter>,
    link: Arc<LinkActivity>,
    replay: Mutex<HelloReplay>,
    /// A ClientHello is pending replay: without one, sends and receives (every media packet)
    /// skip the replay's locks.
    armed: AtomicBool,
    /// Wakes `poll_recv` when a replay is due.
    timer: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl FilteredSocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, link: Arc<LinkActivity>) -> Self {
        Self {
            inner,
            filter: Mutex::new(HandshakeFilter::default()),
            link,
            replay: Mutex::new(HelloReplay::default()),
            armed: AtomicBool::new(false),
            timer: Mutex::new(None),
        }
    }
}

impl fmt::Debug for FilteredSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilteredSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl FilteredSocket {
    /// A due ClientHello replay, delivered as one datagram; otherwise arms the timer for the
    /// next one (so that `cx` is woken then) and returns `None`.
    fn poll_replay(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Option<Poll<io::Result<usize>>> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = replay.due(now);
        self.armed
            .store(replay.next_due().is_some(), Ordering::Relaxed);
        if let Some((datagram, m)) = due {
            if let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) {
                if buf.len() >= datagram.len() {
                    buf[..datagram.len()].copy_from_slice(&datagram);
                    *slot = m;
                    tracing::debug!(from = %m.addr, "unanswered ClientHello delivered again");
                    return Some(Poll::Ready(Ok(1)));
                }
            }
        }
        let mut timer = self.timer.lock().unwrap_or_else(|e| e.into_inner());
        // Timers need the runtime's context (always there: the connection's driver polls this
        // socket from a task); without it the replay waits for the next datagram.
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        match replay.next_due().filter(|_| in_runtime) {
            Some(due) => {
                let due = tokio::time::Instant::from_std(due);
                let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if sleep.deadline() != due {
                    sleep.as_mut().reset(due);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    // Due already (between the check above and now): deliver on the next poll.
                    cx.waker().wake_by_ref();
                }
            }
            None => *timer = None,
        }
        None
    }
}

/// Whether a datagram is (only) a DTLS ClientHello with message_seq 0.
fn is_first_client_hello(d: &[u8]) -> bool {
    matches!(
        classify(d),
        Datagram::Handshake {
            first_client_hello: true,
            ..
        }
    )
}

impl AsyncUdpSocket for FilteredSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if self.armed.load(Ordering::Relaxed) {
            let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
            replay.on_send(transmit.destination, transmit.contents);
            self.armed
                .store(replay.next_due().is_some(), Ordering::Relaxed);
        }
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(ready) = self.poll_replay(cx, bufs, meta) {
                return ready;
            }
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            if n > 0 {
                self.link.on_datagram(std::time::Instant::now());
            }
            let mut kept = 0;
            for i in 0..n {
                let m = meta[i];
                // Only single datagrams that start like DTLS are examined; GRO-coalesced
                // buffers (stride < len) and everything else go straight through.
                let examine = m.len > 0 && m.stride >= m.len && (20..=63).contains(&bufs[i][0]);
                let keep = !examine || {
                    let datagram = &bufs[i][..m.len];
                    let mut filter = self.filter.lock().unwrap_or_else(|e| e.into_inner());
                    if is_first_client_hello(datagram) {
                        self.replay
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .on_client_hello(datagram, m, Instant::now());
                        self.armed.store(true, Ordering::Relaxed);
                    }
                    filter.deliver(m.addr, datagram)
                };
                if !keep {
                    continue;
                }
                if kept != i {
                    let (lo, hi) = bufs.split_at_mut(i);
                    if lo[kept].len() < m.len {
                        // The driver hands equal buffers, so this does not happen; were it
                        // to, the datagram is dropped like any lost one, never misdelivered.
                        continue;
                    }
                    lo[kept][..m.len].copy_from_slice(&hi[0][..m.len]);
                    meta[kept] = m;
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // Everything in this batch was a duplicate: read on (Pending registers the waker).
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_from(addr: SocketAddr, len: usize) -> RecvMeta {
        let mut m = RecvMeta::default();
        m.addr = addr;
        m.len = len;
        m.stride = len;
        m
    }

    #[test]
    fn an_unanswered_client_hello_is_delivered_again_six_times_then_dropped() {
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let hello = [22u8, 1, 2, 3];
        let t0 = Instant::now();
        let mut r = HelloReplay::default();
        r.on_client_hello(&hello, meta_from(from, hello.len()), t0);
        assert!(r.due(t0).is_none());
        let ms = |n| t0 + Duration::from_millis(n);
        let (again, m) = r.due(ms(15)).expect("first replay");
        assert_eq!((again.as_slice(), m.addr), (&hello[..], from));
        assert!(r.due(ms(16)).is_none());
        assert!(r.due(ms(45)).is_some());
        assert!(r.due(ms(104)).is_none());
        assert!(r.due(ms(105)).is_some());
        assert!(r.due(ms(225)).is_some());
        assert!(r.due(ms(465)).is_some());
        assert!(r.due(ms(944)).is_none());
        assert!(r.due(ms(945)).is_some());
        assert!(r.due(ms(5000)).is_none(), "at most six replays");
        assert!(r.next_due().is_none());
    }

    #[test]
    fn a_client_hello_the_stack_answered_is_not_delivered_again() {
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let t0 = Instant::now();
        let mut r = HelloReplay::default();
        r.on_client_hello(&[22, 1], meta_from(from, 2), t0);
        // STUN (first byte 0..=3) or DTLS to someone else answers nothing.
        r.on_send(from, &[0, 1, 0, 0]);
        r.on_send(other, &[22, 0xfe]);
        assert!(r.next_due().is_some());
        // The HelloVerifyRequest (or ServerHello) to the client does.
        r.on_send(from, &[22, 0xfe, 0xff]);
        assert!(r.due(t0 + Duration::from_secs(1)).is_none());
    }

    /// One epoch-0 handshake record holding one whole message.
    fn record(msg_type: u8, seq: u16, body: &[u8]) -> Vec<u8> {
        let mut hs = vec![msg_type];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&seq.to_be_bytes());
        hs.extend_from_slice(&[0, 0, 0]);
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(body);
        let mut r = vec![
            CONTENT_HANDSHAKE,
            0xfe,
            0xfd,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            seq as u8,
        ];
        r.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        r.extend_from_slice(&hs);
        r
    }

    fn flight4() -> Vec<u8> {
        // ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone.
        [(2, 1), (11, 2), (12, 3), (13, 4), (14, 5)]
            .iter()
            .flat_map(|&(t, s)| record(t, s, b"payload"))
            .collect()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_repeated_flight_is_held_back_so_the_receivers_own_timer_resends() {
        let mut f = HandshakeFilter::default();
        assert!(f.deliver(addr(1), &flight4()));
        // The peer's timer resent the same flight: nothing new in it.
        assert!(!f.deliver(addr(1), &flight4()));
        assert!(!f.deliver(addr(1), &flight4()));
        // The same flight from another address is news there.
        assert!(f.deliver(addr(2), &flight4()));
    }

    #[test]
    fn a_datagram_with_any_new_fragment_passes() {
        let mut f = HandshakeFilter::default();
        assert!(f.deliver(addr(1), &record(2, 1, b"hello")));
        let mut both = record(2, 1, b"hello");
        both.extend(record(11, 2, b"cert"));
        assert!(f.deliver(addr(1), &both));
        assert!(!f.deliver(addr(1), &both));
    }

    #[test]
    fn a_repeated_first_client_hello_always_passes() {
        // The server answers it with a new HelloVerifyRequest: that flight has no timer.
        let mut f = HandshakeFilter::default();
        let hello = record(CLIENT_HELLO, 0, b"no cookie");
        assert!(f.deliver(addr(1), &hello));
        assert!(f.deliver(addr(1), &hello));
        // The ClientHello with the cookie (seq 1) is filtered when repeated.
        let hello2 = record(CLIENT_HELLO, 1, b"cookie");
        assert!(f.deliver(addr(1), &hello2));
        assert!(!f.deliver(addr(1), &hello2));
        // A new association from the same address starts over.
        assert!(f.deliver(addr(1), &hello));
        assert!(f.deliver(addr(1), &hello2));
    }

    #[test]
    fn final_flights_and_everything_not_handshake_pass() {
        let mut f = HandshakeFilter::default();
        // Flight 5: handshake records, a ChangeCipherSpec and an epoch-1 Finished.
        let mut flight5 = record(11, 2, b"cert");
        flight5.extend_from_slice(&[20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1]);
        let mut finished = vec![22, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4];
        finished.extend_from_slice(&[1, 2, 3, 4]);
        flight5.extend(finished);
        for _ in 0..3 {
            assert!(f.deliver(addr(1), &flight5));
        }
        // STUN, RTP, application data, truncated records.
        let app = [23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 7, 7];
        for d in [
            &[0u8, 1, 0, 0][..],
            &[0x80, 96, 0, 1][..],
            &app[..],
            &[22, 0xfe][..],
        ] {
            assert!(f.deliver(addr(1), d));
            assert!(f.deliver(addr(1), d));
        }
        let mut cut = record(2, 1, b"hello");
        cut.truncate(cut.len() - 2);
        assert!(f.deliver(addr(1), &cut));
        assert!(f.deliver(addr(1), &cut));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut f = HandshakeFilter::default();
        for port in 0..1000 {
            f.deliver(addr(port), &flight4());
        }
        assert!(f.seen.len() <= MAX_SOURCES);
        for seq in 0..2000u16 {
            f.deliver(addr(1), &record(2, seq + 1, b"x"));
        }
        assert!(f.seen[&addr(1)].len() <= MAX_FRAGMENTS);
    }
}
