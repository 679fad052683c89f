//! Peers: one webrtc-rs peer connection per remote peer, and the registry of them.

pub mod bitrate;
pub mod connection;
pub mod dtls_role;
pub mod fast_start;
pub mod full_reconnect;
pub mod handshake_filter;
pub mod manager;
pub mod metrics;
pub mod quality;
pub mod reconnect;
pub mod remote_tracks;
pub mod sdp_fixups;
pub mod trim;
pub mod udp;

pub use connection::{Peer, PeerState};
pub use manager::PeerManager;
