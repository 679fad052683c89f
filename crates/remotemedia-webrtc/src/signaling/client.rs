//! The signaling client inside a transport: one WebSocket, JSON-RPC requests with ids and
//! timeouts, notifications handed out in order, keep-alive pings, and reconnection with backoff
//! followed by a re-announce when the socket drops.

use super::protocol::{self, AnnounceParams, AnnounceResult, Capability, Incoming, RpcError};
use crate::config::ReconnectionPolicy;
use crate::error::{Error, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a closing client spends sending what it had queued.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
const PING_INTERVAL: Duration = Duration::from_secs(15);

/// What the client reports to its owner, in arrival order.
#[derive(Debug, Clone)]
pub enum SignalingEvent {
    /// A JSON-RPC notification from the server (`peer.offer`, `peer.ice_candidate`, …).
    Notification { method: String, params: Value },
    /// The socket dropped; the client is retrying.
    Reconnecting { attempt: u32 },
    /// The socket is back and this peer is announced again; `peers` are those present now.
    Reconnected { peers: Vec<protocol::PeerInfo> },
    /// The client was closed (it never gives up on its own).
    Closed,
}

/// How a request can fail: the server answered with an error, or no answer came.
#[derive(Debug, Clone)]
pub enum RequestError {
    Rpc(RpcError),
    Transport(Error),
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Rpc(r) if r.code == protocol::PEER_NOT_FOUND => {
                Error::PeerNotFound(r.message)
            }
            RequestError::Rpc(r) => Error::Signaling(format!("{} ({})", r.message, r.code)),
            RequestError::Transport(e) => e,
        }
    }
}

type Pending = HashMap<u64, oneshot::Sender<std::result::Result<Value, RpcError>>>;

struct Inner {
    url: String,
    announce: AnnounceParams,
    /// The `session_key` of the last successful announce, presented on re-announce so that the
    /// new socket reclaims the peer id from a registration whose socket the server has not yet
    /// seen close.
    session_key: Mutex<Option<String>>,
    timeout: Duration,
    policy: ReconnectionPolicy,
    out: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    closed: AtomicBool,
    events: mpsc::UnboundedSender<SignalingEvent>,
    stop: tokio_util::sync::CancellationToken,
}

/// Cheap to clone; every clone speaks on the same socket.
#[derive(Clone)]
pub struct SignalingClient {
    inner: Arc<Inner>,
}

impl SignalingClient {
    /// Connects, announces `peer_id`, and starts the background loop. Returns the client, the
    /// announce result (with the peers already present) and the event stream.
    pub async fn connect(
        url: &str,
        peer_id: &str,
        capabilities: Vec<Capability>,
        user_data: Option<Value>,
        token: Option<String>,
        timeout: Duration,
        policy: ReconnectionPolicy,
    ) -> Result<(
        SignalingClient,
        AnnounceResult,
        mpsc::UnboundedReceiver<SignalingEvent>,
    )> {
        let (events, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            url: url.to_string(),
            announce: AnnounceParams {
                peer_id: peer_id.to_string(),
                capabilities,
                user_data,
                session_key: None,
                token,
            },
            session_key: Mutex::new(None),
            timeout,
            policy,
            out: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            events,
            stop: tokio_util::sync::CancellationToken::new(),
        });
        let client = SignalingClient { inner };
        let ws = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| Error::Timeout(format!("connecting to signaling server {url}")))?
            .map_err(|e| Error::Signaling(format!("cannot connect to {url}: {e}")))?
            .0;
        let (done_tx, done_rx) = oneshot::channel();
        client.attach(ws, done_tx);
        let result = client.announce().await.inspect_err(|_| {
            client.inner.closed.store(true, Ordering::SeqCst);
            client.inner.stop.cancel();
        })?;
        let c = client.clone();
        tokio::spawn(async move { c.supervise(done_rx).await });
        Ok((client, result, rx))
    }

    pub fn peer_id(&self) -> &str {
        &self.inner.announce.peer_id
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    async fn announce(&self) -> Result<AnnounceResult> {
        let params = AnnounceParams {
            session_key: self.inner.session_key.lock().unwrap().clone(),
            ..self.inner.announce.clone()
        };
        let v = self
            .request(protocol::ANNOUNCE, &params)
            .await
            .map_err(|e| match e {
                RequestError::Rpc(r) => {
                    Error::Signaling(format!("announce refused: {} ({})", r.message, r.code))
                }
                RequestError::Transport(e) => e,
            })?;
        let r: AnnounceResult = serde_json::from_value(v)
            .map_err(|e| Error::Signaling(format!("bad announce result: {e}")))?;
        *self.inner.session_key.lock().unwrap() = Some(r.session_key.clone());
        Ok(r)
    }

    /// Runs one socket: a writer fed by an unbounded queue (frames are small and produced by
    /// this process at protocol pace) and a reader dispatching responses and notifications.
    fn attach(
        &self,
        ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        done: oneshot::Sender<()>,
    ) {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        *self.inner.out.lock().unwrap() = Some(tx.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_INTERVAL);
            ping.tick().await;
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => if sink.send(m).await.is_err() { break },
                        None => break,
                    },
                    _ = ping.tick() => if sink.send(Message::Ping(Vec::new().into())).await.is_err() { break },
                    _ = inner.stop.cancelled() => {
                        // What was queued before the close goes out first (a shutdown's
                        // `peer.disconnect` notices: without them the server reports the drop
                        // as `network_error`, and the other side keeps a connection that ICE
                        // still reports alive). Bounded: a stuck socket does not hold it up.
                        let flush = async {
                            while let Ok(m) = rx.try_recv() {
                                if sink.send(m).await.is_err() {
                                    return;
                                }
                            }
                            let _ = sink.send(Message::Close(None)).await;
                        };
                        let _ = tokio::time::timeout(CLOSE_FLUSH, flush).await;
                        break
                    }
                }
            }
            let _ = sink.close().await;
        });
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = stream.next() => m,
                    _ = inner.stop.cancelled() => None,
                };
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                match protocol::parse_frame(&text) {
                    Ok(Incoming::Response { id, result }) => {
                        let waiter = id
                            .as_u64()
                            .and_then(|id| inner.pending.lock().unwrap().remove(&id));
                        if let Some(w) = waiter {
                            let _ = w.send(result);
                        }
                    }
                    Ok(Incoming::Notification { method, params }) => {
                        let _ = inner
                            .events
                            .send(SignalingEvent::Notification { method, params });
                    }
                    Ok(Incoming::Request { id, .. }) => {
                        // The server sends no requests to clients.
                        let err = RpcError {
                            code: protocol::METHOD_NOT_FOUND,
                            message: "client accepts no requests".into(),
                            data: None,
                        };
                        let _ = tx.send(Message::Text(
                            protocol::response_err(Some(&id), &err).into(),
                        ));
                    }
                    Err(e) => tracing::warn!("bad frame from signaling server: {:?}", e.1),
                }
            }
            *inner.out.lock().unwrap() = None;
            // Fail every request still waiting on this socket.
            for (_, w) in inner.pending.lock().unwrap().drain() {
                let _ = w.send(Err(RpcError {
                    code: protocol::INTERNAL_ERROR,
                    message: "signaling socket closed".into(),
                    data: None,
                }));
            }
            let _ = done.send(());
        });
    }

    /// Waits for the socket to drop, then reconnects and re-announces, until the client is
    /// closed. It never gives up on its own: the delay follows the policy's backoff, capped at
    /// `backoff_max_ms`, and keeps that cap for every later attempt (a signaling server that is
    /// down for an hour is reached again when it returns). The policy's `max_retries` bounds
    /// peer reconnection, not this.
    async fn supervise(self, mut done: oneshot::Receiver<()>) {
        loop {
            let _ = (&mut done).await;
            if self.is_closed() {
                break;
            }
            let mut attempt: u32 = 0;
            let reconnected = loop {
                attempt = attempt.saturating_add(1);
                if self.is_closed() {
                    break None;
                }
                let _ = self
                    .inner
                    .events
                    .send(SignalingEvent::Reconnecting { attempt });
                let unit = pseudo_unit(attempt);
                let delay = self.inner.policy.delay_ms(attempt, unit);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    _ = self.inner.stop.cancelled() => break None,
                }
                let conn = tokio::time::timeout(
                    self.inner.timeout,
                    tokio_tungstenite::connect_async(self.inner.url.as_str()),
                )
                .await;
                if let Ok(Ok((ws, _))) = conn {
                    let (tx, rx) = oneshot::channel();
                    self.attach(ws, tx);
                    match self.announce().await {
                        Ok(r) => break Some((r, rx)),
                        Err(e) => tracing::warn!("re-announce failed: {e}"),
                    }
                }
            };
            match reconnected {
                Some((r, rx)) => {
                    done = rx;
                    let _ = self
                        .inner
                        .events
                        .send(SignalingEvent::Reconnected { peers: r.peers });
                }
                None => break,
            }
        }
        self.inner.closed.store(true, Ordering::SeqCst);
        let _ = self.inner.events.send(SignalingEvent::Closed);
    }

    fn send_text(&self, text: String) -> Result<()> {
        if self.is_closed() {
            return Err(Error::ShutDown("signaling client closed".into()));
        }
        let out = self.inner.out.lock().unwrap();
        match out.as_ref() {
            Some(tx) => tx
                .send(Message::Text(text.into()))
                .map_err(|_| Error::Signaling("signaling socket closed".into())),
            None => Err(Error::Signaling("signaling socket is reconnecting".into())),
        }
    }

    /// Sends a request and waits for its response (bounded by the configured timeout).
    pub async fn request<P: Serialize>(
        &self,
        method: &str,
        params: &P,
    ) -> std::result::Result<Value, RequestError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().unwrap().insert(id, tx);
        if let Err(e) = self.send_text(protocol::request(id, method, params)) {
            self.inner.pending.lock().unwrap().remove(&id);
            return Err(RequestError::Transport(e));
        }
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(rpc)))
                if rpc.code == protocol::INTERNAL_ERROR
                    && rpc.message == "signaling socket closed" =>
            {
                Err(RequestError::Transport(Error::Signaling(rpc.message)))
            }
            Ok(Ok(Err(rpc))) => Err(RequestError::Rpc(rpc)),
            Ok(Err(_)) => Err(RequestError::Transport(Error::Signaling(
                "signaling socket closed".into(),
            ))),
            Err(_) => {
                self.inner.pending.lock().unwrap().remove(&id);
                Err(RequestError::Transport(Error::Timeout(format!(
                    "{method} got no response"
                ))))
            }
        }
    }

    /// Sends a notification (no response).
    pub fn notify<P: Serialize>(&self, method: &str, params: &P) -> Result<()> {
        self.send_text(protocol::notification(method, params))
    }

    /// Closes the socket and stops reconnecting. Idempotent.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.stop.cancel();
        *self.inner.out.lock().unwrap() = None;
    }
}

/// A number in [0, 1) for backoff jitter, from the clock (no RNG dependency needed for this).
fn pseudo_unit(salt: u32) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let x = (nanos ^ salt.wrapping_mul(2_654_435_761)).wrapping_mul(2_246_822_519);
    (x % 1_000_000) as f64 / 1_000_000.0
}
