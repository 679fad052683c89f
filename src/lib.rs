//! The Node binding: `#[napi]` classes that convert types and forward to the core crate
//! (`remotemedia-webrtc`). No logic lives here.

#![deny(clippy::all)]
// Free #[napi] functions are called from JS only: unused in the crate's own test build.
#![cfg_attr(test, allow(dead_code))]

mod channel;
mod error;
mod events;
mod peer;
mod pipeline;
mod server;
mod transport;

/// Blocks of 1 MB and more (decoded pictures) on mappings of their own, so that their memory
/// goes back to the system when JavaScript drops them (see the core's `alloc` module).
#[global_allocator]
static ALLOC: remotemedia_webrtc::alloc::LargeBlocksMapped =
    remotemedia_webrtc::alloc::LargeBlocksMapped;

/// Logs of the Rust side go to stderr when `RUST_LOG` is set (e.g. `RUST_LOG=remotemedia_webrtc=debug`).
#[napi_derive::module_init]
fn init() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
