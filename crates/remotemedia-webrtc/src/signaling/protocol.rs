//! JSON-RPC 2.0 wire types of the signaling protocol (docs/spec/signaling.md), shared by the
//! server and the client.
//!
//! Every frame is one JSON-RPC 2.0 object in one WebSocket text message. [`parse_frame`]
//! classifies an incoming frame; [`request`], [`notification`], [`response_ok`] and
//! [`response_err`] serialize outgoing ones. The `*Params` structs are the `params` of each method,
//! with the snake_case field names of the spec. Unknown fields are ignored (never refused), so
//! that newer peers can add fields.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Method names
// ---------------------------------------------------------------------------------------------

/// client → server, request.
pub const ANNOUNCE: &str = "peer.announce";
/// server → every other announced client, notification.
pub const ANNOUNCED: &str = "peer.announced";
/// client → server (request) → target (notification).
pub const OFFER: &str = "peer.offer";
/// client → server (request) → offerer (notification).
pub const ANSWER: &str = "peer.answer";
/// client → server → target, notification.
pub const ICE_CANDIDATE: &str = "peer.ice_candidate";
/// client → server, notification (informational, not forwarded).
pub const STATE_CHANGED: &str = "peer.state_changed";
/// client → server, notification; becomes `peer.disconnected` at the target.
pub const DISCONNECT: &str = "peer.disconnect";
/// server → the other peer, notification.
pub const DISCONNECTED: &str = "peer.disconnected";

/// The `jsonrpc` member every frame carries.
pub const JSONRPC_VERSION: &str = "2.0";

// ---------------------------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------------------------

/// Not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a JSON-RPC 2.0 object.
pub const INVALID_REQUEST: i64 = -32600;
/// Unknown method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Missing/ill-typed field, bad `peer_id`, oversize `sdp`, `user_data` or frame, spoofed `from`,
/// method used before `peer.announce`.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// Peer not found, or `peer_id` already registered by another socket.
pub const PEER_NOT_FOUND: i64 = -32000;
/// Offer invalid.
pub const OFFER_INVALID: i64 = -32002;
/// The server's authentication refused the announce (see `signaling::auth`).
pub const UNAUTHORIZED: i64 = -32001;
/// Answer invalid (e.g. no pending offer with that `request_id`).
pub const ANSWER_INVALID: i64 = -32003;
/// ICE candidate invalid.
pub const ICE_CANDIDATE_INVALID: i64 = -32004;
/// Session / peer limit exceeded.
pub const LIMIT_EXCEEDED: i64 = -32005;
/// Rate limited: the sender is over its message/byte budget, or the target's queue is full of
/// frames from others (the sender pays, the target is never dropped for it). Retry later.
pub const RATE_LIMITED: i64 = -32006;

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// Deepest `user_data` accepted in an announce: a scalar is depth 0, an array or object one more
/// than its deepest member. The server relays `user_data` at most 4 levels below the top of a
/// frame (`result.peers[i].user_data`), so every frame stays far below the 128-level nesting
/// limit of common JSON parsers (serde_json's included).
pub const MAX_USER_DATA_DEPTH: usize = 16;
/// Largest `sdp` accepted in an offer or answer (bytes of the UTF-8 string).
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Largest `user_data` accepted in an announce (bytes of its compact JSON serialization).
pub const MAX_USER_DATA_BYTES: usize = 1024;
/// Largest text frame the server processes. A text frame above this size (but within
/// [`MAX_WS_MESSAGE_BYTES`]) is not dispatched: the server answers it with `-32602` (with the
/// request's `id` when the frame is a well-formed request, `null` otherwise) and the socket stays
/// open.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;
/// Hard WebSocket message/frame limit. A message above this is never buffered: the server closes
/// the socket with close code 1009 (message too big).
pub const MAX_WS_MESSAGE_BYTES: usize = 4 * MAX_FRAME_BYTES;
/// Longest `peer_id`.
pub const MAX_PEER_ID_LEN: usize = 64;
/// Longest `request_id` accepted.
pub const MAX_REQUEST_ID_LEN: usize = 256;
/// Longest ICE `candidate` line accepted.
pub const MAX_CANDIDATE_BYTES: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A JSON-RPC 2.0 error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn parse_error(message: impl Into<String>) -> Self {
        Self::new(PARSE_ERROR, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("method not found: {method}"))
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }

    pub fn peer_not_found(message: impl Into<String>) -> Self {
        Self::new(PEER_NOT_FOUND, message)
    }

    /// The core error for this RPC error: `-32000` → `Error::PeerNotFound`, anything else →
    /// `Error::Signaling("<message> (<code>)")`.
    pub fn to_error(&self) -> crate::Error {
        match self.code {
            PEER_NOT_FOUND => crate::Error::PeerNotFound(self.message.clone()),
            _ => crate::Error::Signaling(format!("{} ({})", self.message, self.code)),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

// ---------------------------------------------------------------------------------------------
// Incoming frames
// ---------------------------------------------------------------------------------------------

/// One classified incoming frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Has `method` and `id`: needs exactly one response. `params` is `Value::Null` when absent.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// Has `method` and no `id`: gets no response. `params` is `Value::Null` when absent.
    Notification { method: String, params: Value },
    /// Has `id` and `result` or `error`.
    Response {
        id: Value,
        result: std::result::Result<Value, RpcError>,
    },
}

/// Classifies one text frame.
///
/// * not JSON → `-32700` with no id;
/// * JSON but not a JSON-RPC 2.0 object (array, primitive, `jsonrpc` missing or not `"2.0"`,
///   `method` not a string, `id` neither string, number nor null, neither `method` nor
///   `result`/`error`, malformed `error` object) → `-32600`, with the id when it is usable.
///
/// `params` is not checked here (its shape is the method's business: `-32602`).
pub fn parse_frame(text: &str) -> Result<Incoming, (Option<Value>, RpcError)> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| (None, RpcError::parse_error(format!("parse error: {e}"))))?;
    let mut obj = match value {
        Value::Object(m) => m,
        Value::Array(_) => {
            return Err((
                None,
                RpcError::invalid_request("batches (arrays) are not supported"),
            ))
        }
        _ => return Err((None, RpcError::invalid_request("not a JSON-RPC 2.0 object"))),
    };

    // `id`: absent → notification; string, number or null → usable; anything else → invalid.
    let id = match obj.remove("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(v),
        Some(_) => {
            return Err((
                None,
                RpcError::invalid_request("id must be a string, a number or null"),
            ))
        }
    };

    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == JSONRPC_VERSION => {}
        Some(_) => return Err((id, RpcError::invalid_request("jsonrpc must be \"2.0\""))),
        None => {
            return Err((
                id,
                RpcError::invalid_request("missing \"jsonrpc\": \"2.0\""),
            ))
        }
    }

    if let Some(method) = obj.remove("method") {
        let method = match method {
            Value::String(m) => m,
            _ => return Err((id, RpcError::invalid_request("method must be a string"))),
        };
        let params = obj.remove("params").unwrap_or(Value::Null);
        return Ok(match id {
            Some(id) => Incoming::Request { id, method, params },
            None => Incoming::Notification { method, params },
        });
    }

    let result = obj.remove("result");
    let error = obj.remove("error");
    let id = match (id, result.is_some() || error.is_some()) {
        (Some(id), true) => id,
        (id, _) => {
            return Err((
                id,
                RpcError::invalid_request("neither a request, a notification nor a response"),
            ))
        }
    };
    match (result, error) {
        (Some(_), Some(_)) => Err((
            Some(id),
            RpcError::invalid_request("a response has either result or error, not both"),
        )),
        (Some(result), None) => Ok(Incoming::Response {
            id,
            result: Ok(result),
        }),
        (None, Some(error)) => match serde_json::from_value::<RpcError>(error) {
            Ok(err) => Ok(Incoming::Response {
                id,
                result: Err(err),
            }),
            Err(e) => Err((
                Some(id),
                RpcError::invalid_request(format!("malformed error object: {e}")),
            )),
        },
        (None, None) => Err((
            Some(id),
            RpcError::invalid_request("neither a request, a notification nor a response"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Outgoing frames
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct RequestFrame<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: Value,
}

#[derive(Serialize)]
struct NotificationFrame<'a> {
    jsonrpc: &'static str,
    method: &'a str,
    params: Value,
}

#[derive(Serialize)]
struct OkFrame<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: Value,
}

#[derive(Serialize)]
struct ErrFrame<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: &'a RpcError,
}

fn to_value(v: impl Serialize) -> Value {
    match serde_json::to_value(v) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("signaling: value not serializable: {e}");
            Value::Null
        }
    }
}

fn to_text(v: impl Serialize) -> String {
    // Serializing a struct of `Value`s and strings into a String cannot fail.
    serde_json::to_string(&v).unwrap_or_default()
}

/// `{"jsonrpc":"2.0","id":id,"method":method,"params":params}`.
pub fn request(id: u64, method: &str, params: impl Serialize) -> String {
    to_text(RequestFrame {
        jsonrpc: JSONRPC_VERSION,
        id,
        method,
        params: to_value(params),
    })
}

/// `{"jsonrpc":"2.0","method":method,"params":params}`.
pub fn notification(method: &str, params: impl Serialize) -> String {
    to_text(NotificationFrame {
        jsonrpc: JSONRPC_VERSION,
        method,
        params: to_value(params),
    })
}

/// `{"jsonrpc":"2.0","id":id,"result":result}`.
pub fn response_ok(id: &Value, result: impl Serialize) -> String {
    to_text(OkFrame {
        jsonrpc: JSONRPC_VERSION,
        id,
        result: to_value(result),
    })
}

/// `{"jsonrpc":"2.0","id":id,"error":err}`; `id` is `null` when unknown.
pub fn response_err(id: Option<&Value>, err: &RpcError) -> String {
    to_text(ErrFrame {
        jsonrpc: JSONRPC_VERSION,
        id: id.unwrap_or(&Value::Null),
        error: err,
    })
}

// ---------------------------------------------------------------------------------------------
// Params
// ---------------------------------------------------------------------------------------------

/// A media capability a peer announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Audio,
    Video,
    Data,
}

/// `peer.announce` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnounceParams {
    pub peer_id: String,
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Value>,
    /// Optional: the `session_key` of an earlier announce of this `peer_id`. It lets a new
    /// socket reclaim the id from a registration whose socket has not been seen to close yet
    /// (the stale socket is closed), and it is required to take a reserved peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Optional: the credential for a server with authentication (an HS256 JWT whose `sub` is
    /// the peer id, in the built-in mode). A browser may send it as the WebSocket URL's `token`
    /// query parameter instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// One peer in the `peers` list of an announce result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub user_data: Option<Value>,
}

/// `peer.announce` result: `status` is `"registered"`, `server_time` ISO 8601, `peers` the peers
/// already present (without the announcing one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnounceResult {
    pub status: String,
    pub server_time: String,
    pub peer_id: String,
    pub session_key: String,
    /// Entries that do not parse as a [`PeerInfo`] are skipped: one bad entry never fails the
    /// whole result.
    #[serde(default, deserialize_with = "lenient_peers")]
    pub peers: Vec<PeerInfo>,
}

/// A peer list in which entries that are not a valid [`PeerInfo`] are skipped (logged).
fn lenient_peers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PeerInfo>, D::Error> {
    let raw: Option<Vec<Value>> = Deserialize::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| match serde_json::from_value::<PeerInfo>(v) {
            Ok(p) if is_valid_peer_id(&p.peer_id) => Some(p),
            Ok(p) => {
                tracing::warn!(
                    "peer list entry with invalid peer_id {:?} skipped",
                    p.peer_id
                );
                None
            }
            Err(e) => {
                tracing::warn!("bad peer list entry skipped: {e}");
                None
            }
        })
        .collect())
}

/// Nesting depth of a JSON value: a scalar is 0, an array or object one more than its deepest
/// member (an empty one is 1). Iterative, so any depth is measured without recursion.
pub fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// `peer.announced` params; `announced_at` is ISO 8601.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncedParams {
    pub peer_id: String,
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub user_data: Option<Value>,
    pub announced_at: String,
}

fn default_true() -> bool {
    true
}

/// `peer.offer` and `peer.answer` params (to the server and, unchanged, to the target).
/// `can_trickle_ice_candidates` defaults to `true` when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdpParams {
    pub from: String,
    pub to: String,
    pub sdp: String,
    #[serde(default = "default_true")]
    pub can_trickle_ice_candidates: bool,
    pub request_id: String,
    /// Optional (an extension of the contract): the sender can carry a connection over to a
    /// new peer connection under the same peer id (a full reconnection: its data channels
    /// rebound by stream id, undelivered reliable messages resent). Absent means `false`;
    /// peers that do not know it ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub can_full_reconnect: bool,
}

/// `peer.offer` / `peer.answer` result: `{"status":"forwarded","request_id":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardedResult {
    pub status: String,
    pub request_id: String,
}

/// `peer.ice_candidate` params. `candidate` is an RFC 5245 candidate line, `""` = end of
/// candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceCandidateParams {
    pub from: String,
    pub to: String,
    pub candidate: String,
    #[serde(default)]
    pub sdp_m_line_index: Option<u16>,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_fragment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `peer.state_changed` params (informational). States are the W3C enum strings
/// (`"connected"`, `"checking"`, …); `timestamp` is ISO 8601.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChangedParams {
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_connection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_gathering_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signaling_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// Why a pair was torn down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    UserRequested,
    NetworkError,
    Timeout,
    Error,
    Unknown,
}

/// `peer.disconnect` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisconnectParams {
    pub from: String,
    pub to: String,
    pub reason: DisconnectReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `peer.disconnected` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisconnectedParams {
    pub from: String,
    pub reason: DisconnectReason,
    #[serde(default)]
    pub request_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Identifiers and time
// ---------------------------------------------------------------------------------------------

/// `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_valid_peer_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PEER_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `t` as ISO 8601 UTC with milliseconds, e.g. `2023-11-14T22:13:20.000Z`. Times before the epoch
/// are clamped to it.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The current time as [`iso8601`].
pub fn now_iso8601() -> String {
    iso8601(SystemTime::now())
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_depth_counts_nesting() {
        assert_eq!(super::json_depth(&json!(1)), 0);
        assert_eq!(super::json_depth(&json!({})), 1);
        assert_eq!(super::json_depth(&json!([[], {"a": [1]}])), 3);
        let mut deep = json!(0);
        for _ in 0..1000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(super::json_depth(&deep), 1000);
    }

    #[test]
    fn one_bad_peer_entry_does_not_fail_an_announce_result() {
        let v = json!({
            "status": "registered", "server_time": "t", "peer_id": "p", "session_key": "k",
            "peers": [
                {"peer_id": "ok", "capabilities": ["audio"]},
                {"peer_id": "bad", "capabilities": ["smell"]},
                {"peer_id": "bad id!", "capabilities": ["audio"]},
                42,
                {"peer_id": "ok2", "capabilities": ["data"], "user_data": {"x": 1}},
            ],
        });
        let r: super::AnnounceResult = serde_json::from_value(v).unwrap();
        let ids: Vec<&str> = r.peers.iter().map(|p| p.peer_id.as_str()).collect();
        assert_eq!(ids, ["ok", "ok2"]);
    }

    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;
    use std::time::Duration;

    fn round_trip<T>(v: &T) -> Value
    where
        T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        let text = serde_json::to_string(v).unwrap();
        let back: T = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, v, "round trip of {text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn method_names_and_codes_are_the_contract() {
        assert_eq!(ANNOUNCE, "peer.announce");
        assert_eq!(ANNOUNCED, "peer.announced");
        assert_eq!(OFFER, "peer.offer");
        assert_eq!(ANSWER, "peer.answer");
        assert_eq!(ICE_CANDIDATE, "peer.ice_candidate");
        assert_eq!(STATE_CHANGED, "peer.state_changed");
        assert_eq!(DISCONNECT, "peer.disconnect");
        assert_eq!(DISCONNECTED, "peer.disconnected");
        assert_eq!(
            [
                PARSE_ERROR,
                INVALID_REQUEST,
                METHOD_NOT_FOUND,
                INVALID_PARAMS,
                INTERNAL_ERROR,
                PEER_NOT_FOUND,
                OFFER_INVALID,
                ANSWER_INVALID,
                ICE_CANDIDATE_INVALID,
                LIMIT_EXCEEDED
            ],
            [-32700, -32600, -32601, -32602, -32603, -32000, -32002, -32003, -32004, -32005]
        );
    }

    #[test]
    fn announce_params_round_trip() {
        let p = AnnounceParams {
            peer_id: "alice".into(),
            capabilities: vec![Capability::Audio, Capability::Video, Capability::Data],
            user_data: Some(json!({"name": "Alice", "n": [1, 2]})),
            session_key: None,
            token: None,
        };
        let v = round_trip(&p);
        assert_eq!(v["capabilities"], json!(["audio", "video", "data"]));
        assert_eq!(v["peer_id"], "alice");
        let p = AnnounceParams {
            user_data: None,
            ..p
        };
        let v = round_trip(&p);
        assert!(v.get("user_data").is_none());
        // Missing user_data and unknown fields are accepted.
        let p: AnnounceParams = serde_json::from_value(
            json!({"peer_id": "b", "capabilities": ["data"], "extra": true}),
        )
        .unwrap();
        assert_eq!(p.capabilities, vec![Capability::Data]);
        assert_eq!(p.user_data, None);
        // Unknown capability and missing fields are refused.
        assert!(serde_json::from_value::<AnnounceParams>(
            json!({"peer_id": "b", "capabilities": ["smell"]})
        )
        .is_err());
        assert!(serde_json::from_value::<AnnounceParams>(json!({"peer_id": "b"})).is_err());
        assert!(serde_json::from_value::<AnnounceParams>(
            json!({"peer_id": 7, "capabilities": ["audio"]})
        )
        .is_err());
        assert!(serde_json::from_value::<AnnounceParams>(
            json!({"peer_id": "b", "capabilities": ["Audio"]})
        )
        .is_err());
    }

    #[test]
    fn announce_result_and_peer_info_round_trip() {
        let r = AnnounceResult {
            status: "registered".into(),
            server_time: "2024-01-01T00:00:00.000Z".into(),
            peer_id: "bob".into(),
            session_key: "abc".into(),
            peers: vec![
                PeerInfo {
                    peer_id: "alice".into(),
                    capabilities: vec![Capability::Audio],
                    user_data: Some(json!("x")),
                },
                PeerInfo {
                    peer_id: "carol".into(),
                    capabilities: vec![Capability::Data],
                    user_data: None,
                },
            ],
        };
        let v = round_trip(&r);
        assert_eq!(v["status"], "registered");
        assert_eq!(v["peers"][0]["peer_id"], "alice");
        assert_eq!(v["peers"][1]["user_data"], Value::Null);
        // `peers` defaults to empty.
        let r: AnnounceResult = serde_json::from_value(json!({
            "status": "registered", "server_time": "t", "peer_id": "p", "session_key": "k"
        }))
        .unwrap();
        assert!(r.peers.is_empty());
    }

    #[test]
    fn announced_params_round_trip() {
        let p = AnnouncedParams {
            peer_id: "alice".into(),
            capabilities: vec![Capability::Video],
            user_data: None,
            announced_at: "2024-01-01T00:00:00.000Z".into(),
        };
        let v = round_trip(&p);
        assert_eq!(v["capabilities"], json!(["video"]));
        assert_eq!(v["user_data"], Value::Null);
        round_trip(&AnnouncedParams {
            user_data: Some(json!({"a": 1})),
            ..p
        });
    }

    #[test]
    fn sdp_params_round_trip() {
        let p = SdpParams {
            from: "a".into(),
            to: "b".into(),
            sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n".into(),
            can_trickle_ice_candidates: false,
            request_id: "r1".into(),
            can_full_reconnect: false,
        };
        let v = round_trip(&p);
        assert_eq!(v["can_trickle_ice_candidates"], false);
        assert_eq!(v["request_id"], "r1");
        let p: SdpParams = serde_json::from_value(
            json!({"from": "a", "to": "b", "sdp": "v=0", "request_id": "r"}),
        )
        .unwrap();
        assert!(p.can_trickle_ice_candidates);
        assert!(
            serde_json::from_value::<SdpParams>(json!({"from": "a", "to": "b", "sdp": "v=0"}))
                .is_err()
        );
        assert!(serde_json::from_value::<SdpParams>(
            json!({"from": "a", "to": "b", "sdp": 1, "request_id": "r"})
        )
        .is_err());
    }

    #[test]
    fn forwarded_result_round_trip() {
        let v = round_trip(&ForwardedResult {
            status: "forwarded".into(),
            request_id: "r9".into(),
        });
        assert_eq!(v, json!({"status": "forwarded", "request_id": "r9"}));
    }

    #[test]
    fn ice_candidate_params_round_trip() {
        let full = IceCandidateParams {
            from: "a".into(),
            to: "b".into(),
            candidate: "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host".into(),
            sdp_m_line_index: Some(0),
            sdp_mid: Some("0".into()),
            user_fragment: Some("ufrag".into()),
            password: Some("pwd".into()),
            request_id: Some("r1".into()),
        };
        let v = round_trip(&full);
        assert_eq!(v["sdp_m_line_index"], 0);
        assert_eq!(v["user_fragment"], "ufrag");
        let end = IceCandidateParams {
            candidate: String::new(),
            sdp_m_line_index: None,
            sdp_mid: None,
            user_fragment: None,
            password: None,
            request_id: None,
            ..full
        };
        let v = round_trip(&end);
        assert_eq!(v["candidate"], "");
        assert_eq!(v["sdp_mid"], Value::Null);
        assert!(v.get("request_id").is_none());
        let p: IceCandidateParams =
            serde_json::from_value(json!({"from": "a", "to": "b", "candidate": ""})).unwrap();
        assert_eq!(p.sdp_m_line_index, None);
        assert!(serde_json::from_value::<IceCandidateParams>(
            json!({"from": "a", "to": "b", "candidate": "", "sdp_m_line_index": -1})
        )
        .is_err());
    }

    #[test]
    fn state_changed_params_round_trip() {
        let p = StateChangedParams {
            from: "a".into(),
            to: "b".into(),
            connection_state: Some("connected".into()),
            ice_connection_state: Some("checking".into()),
            ice_gathering_state: Some("complete".into()),
            signaling_state: Some("stable".into()),
            request_id: Some("r1".into()),
            timestamp: Some("2024-01-01T00:00:00.000Z".into()),
        };
        let v = round_trip(&p);
        assert_eq!(v["ice_gathering_state"], "complete");
        let p: StateChangedParams =
            serde_json::from_value(json!({"from": "a", "to": "b"})).unwrap();
        assert_eq!(p.connection_state, None);
        round_trip(&p);
    }

    #[test]
    fn disconnect_params_round_trip() {
        for (reason, text) in [
            (DisconnectReason::UserRequested, "user_requested"),
            (DisconnectReason::NetworkError, "network_error"),
            (DisconnectReason::Timeout, "timeout"),
            (DisconnectReason::Error, "error"),
            (DisconnectReason::Unknown, "unknown"),
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), json!(text));
            let p = DisconnectParams {
                from: "a".into(),
                to: "b".into(),
                reason,
                details: Some("bye".into()),
                request_id: Some("r".into()),
            };
            let v = round_trip(&p);
            assert_eq!(v["reason"], text);
            let d = DisconnectedParams {
                from: "a".into(),
                reason,
                request_id: None,
            };
            let v = round_trip(&d);
            assert_eq!(v["reason"], text);
        }
        let p: DisconnectParams =
            serde_json::from_value(json!({"from": "a", "to": "b", "reason": "timeout"})).unwrap();
        assert_eq!(p.details, None);
        assert!(serde_json::from_value::<DisconnectParams>(
            json!({"from": "a", "to": "b", "reason": "bored"})
        )
        .is_err());
    }

    #[test]
    fn rpc_error_round_trip() {
        let e = RpcError::new(ANSWER_INVALID, "no such offer");
        let v = round_trip(&e);
        assert_eq!(v, json!({"code": -32003, "message": "no such offer"}));
        let e = RpcError {
            data: Some(json!({"k": 1})),
            ..e
        };
        round_trip(&e);
        assert_eq!(
            RpcError::peer_not_found("x").to_error(),
            crate::Error::PeerNotFound("x".into())
        );
        assert_eq!(
            RpcError::invalid_params("bad").to_error().code(),
            "ERR_SIGNALING"
        );
    }

    fn code_of(text: &str) -> (Option<Value>, i64) {
        match parse_frame(text) {
            Ok(i) => panic!("{text} parsed as {i:?}"),
            Err((id, e)) => (id, e.code),
        }
    }

    #[test]
    fn parse_frame_classification_table() {
        let errors: &[(&str, Option<Value>, i64)] = &[
            ("", None, PARSE_ERROR),
            ("not json", None, PARSE_ERROR),
            ("{\"jsonrpc\":\"2.0\",", None, PARSE_ERROR),
            ("{'a':1}", None, PARSE_ERROR),
            ("[1,2]", None, INVALID_REQUEST),
            ("[]", None, INVALID_REQUEST),
            ("42", None, INVALID_REQUEST),
            ("\"x\"", None, INVALID_REQUEST),
            ("null", None, INVALID_REQUEST),
            ("true", None, INVALID_REQUEST),
            ("{}", None, INVALID_REQUEST),
            (r#"{"id":1,"method":"m"}"#, Some(json!(1)), INVALID_REQUEST),
            (
                r#"{"jsonrpc":"1.0","id":"a","method":"m"}"#,
                Some(json!("a")),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":2.0,"id":3,"method":"m"}"#,
                Some(json!(3)),
                INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","method":5}"#, None, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":null}"#,
                Some(json!(4)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"m"}"#,
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"m"}"#,
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":7}"#,
                Some(json!(7)),
                INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","result":1}"#, None, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":8,"result":1,"error":{"code":1,"message":"m"}}"#,
                Some(json!(8)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":9,"error":{"code":"x","message":"m"}}"#,
                Some(json!(9)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":10,"error":"boom"}"#,
                Some(json!(10)),
                INVALID_REQUEST,
            ),
        ];
        for (text, id, code) in errors {
            assert_eq!(code_of(text), (id.clone(), *code), "frame {text}");
        }

        let ok: &[(&str, Incoming)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"peer.announce","params":{"a":1}}"#,
                Incoming::Request {
                    id: json!(1),
                    method: "peer.announce".into(),
                    params: json!({"a": 1}),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x-1","method":"m"}"#,
                Incoming::Request {
                    id: json!("x-1"),
                    method: "m".into(),
                    params: Value::Null,
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"m","params":[1]}"#,
                Incoming::Request {
                    id: Value::Null,
                    method: "m".into(),
                    params: json!([1]),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","method":"peer.ice_candidate","params":{}}"#,
                Incoming::Notification {
                    method: "peer.ice_candidate".into(),
                    params: json!({}),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","method":"m","params":5}"#,
                Incoming::Notification {
                    method: "m".into(),
                    params: json!(5),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"result":{"status":"forwarded"}}"#,
                Incoming::Response {
                    id: json!(2),
                    result: Ok(json!({"status": "forwarded"})),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"result":null}"#,
                Incoming::Response {
                    id: json!(3),
                    result: Ok(Value::Null),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
                Incoming::Response {
                    id: Value::Null,
                    result: Err(RpcError::new(PARSE_ERROR, "bad")),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32000,"message":"m","data":[1]}}"#,
                Incoming::Response {
                    id: json!(4),
                    result: Err(RpcError {
                        code: PEER_NOT_FOUND,
                        message: "m".into(),
                        data: Some(json!([1])),
                    }),
                },
            ),
        ];
        for (text, expected) in ok {
            assert_eq!(&parse_frame(text).unwrap(), expected, "frame {text}");
        }
    }

    #[test]
    fn serialized_frames_parse_back() {
        let params = AnnounceParams {
            peer_id: "a".into(),
            capabilities: vec![Capability::Audio],
            user_data: None,
            session_key: None,
            token: None,
        };
        let text = request(7, ANNOUNCE, &params);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(
            parse_frame(&text).unwrap(),
            Incoming::Request {
                id: json!(7),
                method: ANNOUNCE.into(),
                params: serde_json::to_value(&params).unwrap(),
            }
        );

        let text = notification(ICE_CANDIDATE, json!({"x": 1}));
        assert!(!text.contains("\"id\""));
        assert_eq!(
            parse_frame(&text).unwrap(),
            Incoming::Notification {
                method: ICE_CANDIDATE.into(),
                params: json!({"x": 1}),
            }
        );

        let text = response_ok(&json!("q"), json!({"status": "forwarded"}));
        assert_eq!(
            parse_frame(&text).unwrap(),
            Incoming::Response {
                id: json!("q"),
                result: Ok(json!({"status": "forwarded"})),
            }
        );

        let err = RpcError::new(METHOD_NOT_FOUND, "nope");
        let text = response_err(Some(&json!(3)), &err);
        assert_eq!(
            parse_frame(&text).unwrap(),
            Incoming::Response {
                id: json!(3),
                result: Err(err.clone()),
            }
        );
        let text = response_err(None, &err);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
        assert!(v["error"].get("data").is_none());
    }

    #[test]
    fn peer_id_validation_table() {
        let long64 = "a".repeat(64);
        let long65 = "a".repeat(65);
        let table: &[(&str, bool)] = &[
            ("alice", true),
            ("A", true),
            ("0", true),
            ("_", true),
            ("-", true),
            ("peer_1-B", true),
            (&long64, true),
            ("", false),
            (&long65, false),
            ("a b", false),
            ("a.b", false),
            ("a/b", false),
            ("a:b", false),
            ("é", false),
            ("ａ", false),
            ("a\n", false),
            ("a\0", false),
            ("remotemedia-server", true),
        ];
        for (id, ok) in table {
            assert_eq!(is_valid_peer_id(id), *ok, "peer id {id:?}");
        }
    }

    #[test]
    fn iso8601_formatting() {
        let at = |s: u64, ms: u64| {
            iso8601(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        assert_eq!(now_iso8601().len(), 24);
    }
}
