use crate::error::{invalid_config, js};
use crate::events::{make_tsfn, spawn_pump, NativeEvent};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use remotemedia_webrtc::signaling::auth::{issue_token, token_ttl, AuthHook, HmacTokenAuth};
use remotemedia_webrtc::signaling::server::{ServerConfig, ServerEvent, SignalingServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Numbers arrive as `f64` so that NaN, ±Infinity, fractions and negatives are refused by
/// [`whole`] instead of being wrapped into a `u32` (-1 would become 4294967295). Unknown keys are
/// refused by the JS layer (`js/server.js`), which knows the option names.
#[napi(object)]
pub struct ServerOptions {
    pub host: Option<String>,
    pub port: Option<f64>,
    pub max_peers: Option<f64>,
    pub ping_interval_ms: Option<f64>,
    pub announce_timeout_ms: Option<f64>,
    pub max_connections_per_ip: Option<f64>,
    pub max_connections: Option<f64>,
    /// Origins allowed besides same-origin and no-Origin requests; `"*"` = any.
    pub allowed_origins: Option<Vec<String>>,
    /// HS256 secret (at least 32 bytes): every announce then needs a token whose `sub` is its
    /// peer id.
    pub auth_secret: Option<String>,
    /// HTML served at `GET /`.
    pub http_page: Option<String>,
}

/// `v` as a whole number in `min..=max`, or `ERR_INVALID_CONFIG` naming the option.
fn whole(name: &str, v: Option<f64>, min: u64, max: u64) -> napi::Result<Option<u64>> {
    let Some(v) = v else { return Ok(None) };
    if !v.is_finite() || v.fract() != 0.0 || v < min as f64 || v > max as f64 {
        return Err(invalid_config(format!(
            "{name} must be a whole number in {min}..={max}, got {v}"
        )));
    }
    Ok(Some(v as u64))
}

#[napi]
pub struct NativeSignalingServer {
    s: Arc<SignalingServer>,
    closed: Arc<AtomicBool>,
}

#[napi]
impl NativeSignalingServer {
    #[napi(factory)]
    pub async fn listen(options: Option<ServerOptions>) -> napi::Result<NativeSignalingServer> {
        let o = options.unwrap_or(ServerOptions {
            host: None,
            port: None,
            max_peers: None,
            ping_interval_ms: None,
            announce_timeout_ms: None,
            max_connections_per_ip: None,
            max_connections: None,
            allowed_origins: None,
            auth_secret: None,
            http_page: None,
        });
        let mut cfg = ServerConfig::default();
        if let Some(h) = o.host {
            cfg.host = h;
        }
        if let Some(p) = whole("port", o.port, 0, 65535)? {
            cfg.port = p as u16;
        }
        if let Some(m) = whole("maxPeers", o.max_peers, 1, u32::MAX as u64)? {
            cfg.max_peers = m as usize;
        }
        if let Some(ms) = whole("pingIntervalMs", o.ping_interval_ms, 100, u32::MAX as u64)? {
            cfg.ping_interval = Duration::from_millis(ms);
        }
        // Ranges are the core's (SignalingServer::bind); here only "a whole number".
        if let Some(ms) = whole(
            "announceTimeoutMs",
            o.announce_timeout_ms,
            0,
            u64::MAX >> 11,
        )? {
            cfg.announce_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = whole(
            "maxConnectionsPerIp",
            o.max_connections_per_ip,
            0,
            u32::MAX as u64,
        )? {
            cfg.max_connections_per_ip = n as usize;
        }
        if let Some(n) = whole("maxConnections", o.max_connections, 0, u32::MAX as u64)? {
            cfg.max_connections = n as usize;
        }
        if let Some(secret) = o.auth_secret {
            let auth = HmacTokenAuth::new(secret.as_bytes()).map_err(js)?;
            cfg.auth = Some(AuthHook::new(auth));
        }
        if let Some(origins) = o.allowed_origins {
            cfg.allowed_origins = origins;
        }
        cfg.http_page = o.http_page;
        let s = SignalingServer::bind(cfg).await.map_err(js)?;
        Ok(Self {
            s: Arc::new(s),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    #[napi(getter)]
    pub fn url(&self) -> String {
        self.s.url()
    }

    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.s.local_addr().port() as u32
    }

    #[napi(catch_unwind)]
    pub fn peer_ids(&self) -> Vec<String> {
        self.s.peer_ids()
    }

    #[napi(catch_unwind)]
    pub fn set_event_handler(&self, cb: Function<Vec<NativeEvent>, ()>) -> napi::Result<()> {
        let tsfn = make_tsfn(cb)?;
        let mut sub = self.s.subscribe();
        let (tx, rx) = mpsc::channel(64);
        napi::bindgen_prelude::spawn(async move {
            loop {
                let ev = match sub.recv().await {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                };
                let mut n = NativeEvent::default();
                match ev {
                    ServerEvent::PeerAnnounced {
                        peer_id,
                        capabilities,
                        user_data,
                    } => {
                        n.kind = "peer-announced".into();
                        n.peer_id = Some(peer_id);
                        n.capabilities = Some(
                            capabilities
                                .iter()
                                .filter_map(|c| serde_json::to_value(c).ok())
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect(),
                        );
                        n.user_data = user_data.map(|v| v.to_string());
                    }
                    ServerEvent::PeerLeft { peer_id } => {
                        n.kind = "peer-left".into();
                        n.peer_id = Some(peer_id);
                    }
                }
                if tx.send(n).await.is_err() {
                    break;
                }
            }
        });
        spawn_pump(rx, tsfn, self.closed.clone());
        Ok(())
    }

    /// Stops accepting, closes every client socket. Idempotent.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.s.close().await;
        Ok(())
    }
}

/// An HS256 signaling token for `peerId`, valid for `ttlSeconds` (a backend hands it to the
/// client that will announce as `peerId`).
#[napi(js_name = "issueSignalingToken")]
pub fn issue_signaling_token(
    secret: String,
    peer_id: String,
    ttl_seconds: f64,
) -> napi::Result<String> {
    let ttl = token_ttl(ttl_seconds).map_err(js)?;
    issue_token(secret.as_bytes(), &peer_id, ttl).map_err(js)
}
