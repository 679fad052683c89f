//! JSON-RPC 2.0 signaling (docs/spec/signaling.md): wire types, the server, the client.

pub mod auth;
pub mod client;
pub mod protocol;
pub mod server;
