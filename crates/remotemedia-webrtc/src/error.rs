//! The one error type of the core. Every variant maps to a stable code (`Error::code`) that the
//! Node binding exposes as `WebRtcError.code`.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("signaling error: {0}")]
    Signaling(String),
    #[error("connection failed: {0}")]
    ConnectionFailed(String),
    #[error("peer not found: {0}")]
    PeerNotFound(String),
    #[error("peer not connected: {0}")]
    PeerNotConnected(String),
    #[error("maximum number of peers ({0}) reached")]
    MaxPeers(usize),
    #[error("NAT traversal failed: {0}")]
    NatTraversal(String),
    #[error("invalid data: {0}")]
    InvalidData(String),
    #[error("encoding failed: {0}")]
    Encoding(String),
    #[error("decoding failed: {0}")]
    Decoding(String),
    /// A remote peer offers or sends media in a format this build does not decode.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    #[error("session not found: {0}")]
    SessionNotFound(String),
    #[error("session already exists: {0}")]
    SessionExists(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("not started: {0}")]
    NotStarted(String),
    #[error("already started")]
    AlreadyStarted,
    #[error("shut down: {0}")]
    ShutDown(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable code, as in docs/spec/api.md.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidConfig(_) => "ERR_INVALID_CONFIG",
            Error::Signaling(_) => "ERR_SIGNALING",
            Error::ConnectionFailed(_) => "ERR_CONNECTION_FAILED",
            Error::PeerNotFound(_) => "ERR_PEER_NOT_FOUND",
            Error::PeerNotConnected(_) => "ERR_PEER_NOT_CONNECTED",
            Error::MaxPeers(_) => "ERR_MAX_PEERS",
            Error::NatTraversal(_) => "ERR_NAT_TRAVERSAL",
            Error::InvalidData(_) => "ERR_INVALID_DATA",
            Error::Encoding(_) => "ERR_ENCODING",
            Error::Decoding(_) => "ERR_DECODING",
            Error::UnsupportedCodec(_) => "ERR_UNSUPPORTED_CODEC",
            Error::SessionNotFound(_) => "ERR_SESSION_NOT_FOUND",
            Error::SessionExists(_) => "ERR_SESSION_EXISTS",
            Error::InvalidManifest(_) => "ERR_INVALID_MANIFEST",
            Error::NotStarted(_) => "ERR_NOT_STARTED",
            Error::AlreadyStarted => "ERR_ALREADY_STARTED",
            Error::ShutDown(_) => "ERR_SHUT_DOWN",
            Error::Timeout(_) => "ERR_TIMEOUT",
            Error::Internal(_) => "ERR_INTERNAL",
        }
    }

    pub(crate) fn webrtc(context: &str, e: impl std::fmt::Display) -> Self {
        Error::ConnectionFailed(format!("{context}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_distinct_code() {
        let all = [
            Error::InvalidConfig(String::new()),
            Error::Signaling(String::new()),
            Error::ConnectionFailed(String::new()),
            Error::PeerNotFound(String::new()),
            Error::PeerNotConnected(String::new()),
            Error::MaxPeers(1),
            Error::NatTraversal(String::new()),
            Error::InvalidData(String::new()),
            Error::Encoding(String::new()),
            Error::Decoding(String::new()),
            Error::UnsupportedCodec(String::new()),
            Error::SessionNotFound(String::new()),
            Error::SessionExists(String::new()),
            Error::InvalidManifest(String::new()),
            Error::NotStarted(String::new()),
            Error::AlreadyStarted,
            Error::ShutDown(String::new()),
            Error::Timeout(String::new()),
            Error::Internal(String::new()),
        ];
        let mut codes: Vec<_> = all.iter().map(|e| e.code()).collect();
        assert!(codes.iter().all(|c| c.starts_with("ERR_")));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
