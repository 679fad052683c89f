//! remotemedia-webrtc core: multi-peer WebRTC transport in plain Rust (no napi).

pub mod alloc;
pub mod channel;
pub mod config;
pub mod error;
pub mod event;
pub mod media;
pub mod peer;
pub mod pipeline;
pub mod session;
pub mod signaling;
pub mod sync;
#[cfg(test)]
mod test_signal;
pub mod transport;

pub use config::WebRtcTransportConfig;
pub use error::{Error, Result};
pub use transport::WebRtcTransport;
