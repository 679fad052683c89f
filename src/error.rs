//! Core errors → JS errors. The message starts with the stable code (`ERR_…: message`); the
//! JS layer turns it into a `WebRtcError` with `code` set.

use remotemedia_webrtc::Error;

pub fn js(e: Error) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, format!("{}: {}", e.code(), e))
}

pub fn invalid_config(msg: impl std::fmt::Display) -> napi::Error {
    js(Error::InvalidConfig(msg.to_string()))
}

pub fn invalid_data(msg: impl std::fmt::Display) -> napi::Error {
    js(Error::InvalidData(msg.to_string()))
}
