use crate::error::{invalid_config, js};
use crate::events::{make_tsfn, spawn_pump, NativeEvent};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use remotemedia_webrtc::signaling::server::{ServerConfig, ServerEvent, SignalingServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

#[napi(object)]
pub struct ServerOptions {
    pub host: Option<String>,
    pub port: Option<u32>,
    pub max_peers: Option<u32>,
    pub ping_interval_ms: Option<u32>,
    pub announce_timeout_ms: Option<u32>,
    pub max_connections_per_ip: Option<u32>,
    pub max_connections: Option<u32>,
    /// Origins allowed besides same-origin and no-Origin requests; `"*"` = any.
    pub allowed_origins: Option<Vec<String>>,
    /// HTML served at `GET /`.
    pub http_page: Option<String>,
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
            http_page: None,
        });
        let mut cfg = ServerConfig::default();
        if let Some(h) = o.host {
            cfg.host = h;
        }
        if let Some(p) = o.port {
            cfg.port = u16::try_from(p)
                .map_err(|_| invalid_config(format!("port must be in 0..=65535, got {p}")))?;
        }
        if let Some(m) = o.max_peers {
            if m == 0 {
                return Err(invalid_config("maxPeers must be at least 1"));
            }
            cfg.max_peers = m as usize;
        }
        if let Some(ms) = o.ping_interval_ms {
            if ms < 100 {
                return Err(invalid_config(format!(
                    "pingIntervalMs must be >= 100, got {ms}"
                )));
            }
            cfg.ping_interval = Duration::from_millis(ms as u64);
        }
        // Validated by the core (SignalingServer::bind).
        if let Some(ms) = o.announce_timeout_ms {
            cfg.announce_timeout = Duration::from_millis(u64::from(ms));
        }
        if let Some(n) = o.max_connections_per_ip {
            cfg.max_connections_per_ip = n as usize;
        }
        if let Some(n) = o.max_connections {
            cfg.max_connections = n as usize;
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
