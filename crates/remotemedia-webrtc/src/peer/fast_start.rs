//! Fast connection setup for webrtc-rs 0.21.
//!
//! The webrtc crate's driver flushes queued packets only at its next wake-up, which once ICE is
//! connected is the ICE agent's 200 ms timer; DTLS ClientHello, SCTP INIT and the DCEP OPEN
//! each wait for one such wake-up (about 600 ms in all; docs/spec/webrtc-rs-notes.md). This
//! runtime wraps the default tokio runtime and, while a connection is being set up (a
//! [`Boost`] guard is alive), caps every driver sleep at 1 ms, so each queued handshake packet
//! leaves within a millisecond. Once the data channel is open the guards are gone and the
//! driver sleeps as long as it likes again: no cost on an established connection.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
};

/// The longest a driver sleeps while boosted.
pub const BOOST_TICK: Duration = Duration::from_millis(1);

pub struct FastStartRuntime {
    inner: Arc<dyn Runtime>,
    boosts: Arc<AtomicUsize>,
    /// Datagrams received by the sockets of this runtime (one runtime per peer connection).
    link: Arc<super::udp::LinkActivity>,
}

impl fmt::Debug for FastStartRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastStartRuntime")
            .field("boosts", &self.boosts.load(Ordering::Relaxed))
            .finish()
    }
}

/// While alive, the runtime's sleeps are capped at [`BOOST_TICK`].
pub struct Boost(Arc<AtomicUsize>);

impl Drop for Boost {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FastStartRuntime {
    pub fn new() -> Option<Arc<Self>> {
        Some(Arc::new(Self {
            inner: webrtc::runtime::default_runtime()?,
            boosts: Arc::new(AtomicUsize::new(0)),
            link: Arc::default(),
        }))
    }

    /// When this runtime's sockets last received a datagram.
    pub fn link(&self) -> Arc<super::udp::LinkActivity> {
        self.link.clone()
    }

    pub fn boost(&self) -> Boost {
        self.boosts.fetch_add(1, Ordering::SeqCst);
        Boost(self.boosts.clone())
    }

    pub fn is_boosted(&self) -> bool {
        self.boosts.load(Ordering::SeqCst) > 0
    }

    /// The sleep the driver actually gets for a requested `d`.
    pub fn effective_sleep(&self, d: Duration) -> Duration {
        if self.is_boosted() {
            d.min(BOOST_TICK)
        } else {
            d
        }
    }
}

impl Runtime for FastStartRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }
    fn spawn_reactor(
        &self,
        pool: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(pool, future)
    }
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        // Every peer socket passes here: size its buffers (see `peer::udp`).
        super::udp::tune(&socket);
        // ... and a filter that keeps DTLS handshakes alive under loss (see `handshake_filter`).
        let inner = self.inner.wrap_udp_socket(socket)?;
        Ok(Arc::new(super::handshake_filter::FilteredSocket::new(
            inner,
            self.link.clone(),
        )))
    }
    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }
    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }
    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }
    fn now(&self) -> Instant {
        self.inner.now()
    }
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(self.effective_sleep(duration))
    }
    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }
    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }
    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }
    fn name(&self) -> &'static str {
        "fast-start-tokio"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_are_capped_only_while_boosted() {
        let rt = FastStartRuntime::new().unwrap();
        let long = Duration::from_millis(200);
        assert_eq!(rt.effective_sleep(long), long);
        let a = rt.boost();
        let b = rt.boost();
        assert_eq!(rt.effective_sleep(long), BOOST_TICK);
        drop(a);
        assert_eq!(rt.effective_sleep(long), BOOST_TICK);
        drop(b);
        assert_eq!(rt.effective_sleep(long), long);
        assert!(!rt.is_boosted());
    }
}
