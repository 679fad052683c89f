//! The Node binding: `#[napi]` classes that convert types and forward to the core crate
//! (`remotemedia-webrtc`). No logic lives here.

#![deny(clippy::all)]

mod channel;
mod error;
mod events;
mod peer;
mod server;
mod transport;
