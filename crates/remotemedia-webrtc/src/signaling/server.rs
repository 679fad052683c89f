//! The JSON-RPC 2.0 signaling server (docs/spec/signaling.md) on tokio + tokio-tungstenite.
//!
//! * **Endpoint.** A WebSocket upgrade is accepted on any path (`ws://host:port`,
//!   `ws://host:port/ws`, …). A plain HTTP request (no `Upgrade: websocket`) gets
//!   [`ServerConfig::http_page`] as `200 text/html` for `GET /` or `GET /index.html` when set, `404`
//!   otherwise. The request head is read (within 10 s, at most 16 KiB) and then replayed to
//!   tungstenite, which parses it again. A WebSocket request whose `Origin` is neither absent,
//!   nor this server's own (`Origin` host == `Host`), nor in [`ServerConfig::allowed_origins`]
//!   gets `403`.
//! * **Connections.** Each remote IP may hold [`ServerConfig::max_connections_per_ip`] TCP
//!   connections and the server [`ServerConfig::max_connections`] (counted from `accept`, before
//!   any handshake); extra ones get a `503` and are closed at once. A WebSocket that has not
//!   announced within [`ServerConfig::announce_timeout`] is closed with 1008.
//! * **Frames.** Every text frame is one JSON-RPC object. A malformed frame gets its error
//!   (`-32700`, `-32600`, `-32601`, `-32602`, …) and the socket stays open. Binary frames get
//!   `-32600`. Text frames larger than [`MAX_FRAME_BYTES`] (256 KiB) are not dispatched: they get
//!   `-32602` (with the request's id when the frame is a request) and the socket stays open.
//!   Messages larger than [`MAX_WS_MESSAGE_BYTES`] (1 MiB) are never buffered: the socket is
//!   closed with close code 1009. Invalid UTF-8 in a text frame closes with 1007 (RFC 6455).
//!   When the server closes a socket on such a fault, it reads and discards what the client still
//!   sends (for up to 1 s) so that the close frame is not lost to a TCP reset.
//! * **Trust.** `from` must equal the `peer_id` registered on the socket; any method but
//!   `peer.announce` needs a prior announce. Requests that break this get `-32602`; such
//!   notifications are dropped.
//! * **Requests and notifications.** Every method works in both forms: a request gets exactly one
//!   response, a notification none (its errors are only logged). Unknown methods: `-32601` for
//!   requests, ignored for notifications.
//! * **Identity.** An announce returns a `session_key`. A live `peer_id` is refused to another
//!   socket (`-32000`) unless that announce presents the registration's `session_key`: then the
//!   new socket takes the id and its pairs over, and the stale socket is unregistered and closed.
//!   [`ServerConfig::reserved_peer_ids`] are taken only with their reservation's key.
//!   `user_data` is limited to [`MAX_USER_DATA_BYTES`] and [`MAX_USER_DATA_DEPTH`] levels.
//! * **Pairs.** A forwarded offer makes a *pair* of its two peers and a *session* keyed by its
//!   `request_id`. An answer must name a pending (unanswered, not older than
//!   [`ServerConfig::offer_timeout`]) offer from its target, else `-32003`. At most
//!   [`ServerConfig::max_pending_offers_per_sender`] / `_per_target` offers are pending at once
//!   (`-32005` naming the peer). ICE candidates are relayed only within a pair that has a live
//!   session (else `-32004`, or dropped as a notification); with a `request_id` it must name a
//!   live session of that pair (silently dropped otherwise). `peer.disconnect` ends the pair.
//!   When a socket closes, every peer that had a pair with it gets `peer.disconnected`
//!   (`network_error`).
//! * **Budgets.** Each socket has token buckets: [`ServerConfig::message_budget`] (frames/s),
//!   [`ServerConfig::byte_budget`] (bytes/s) and [`ServerConfig::announce_budget`] (announces/s,
//!   each fans out to every peer). Over budget, a request gets `-32006` (rate limited) and a
//!   notification is dropped; past [`ServerConfig::strikes_before_close`] refusals (net of what
//!   the frame budget refills) the socket is closed with 1008 (policy violation).
//! * **Keep-alive.** A WebSocket Ping goes out every [`ServerConfig::ping_interval`]; a socket
//!   that sends no frame at all (pong, text, anything) for `2 × ping_interval` is closed. A
//!   socket sending more than [`ServerConfig::max_control_frames_per_sec`] pings and pongs in a
//!   second is closed with 1008. tungstenite's write buffer per socket is capped (64 KiB plus
//!   the largest frame the server sends), so the pongs owed to a client that pings without
//!   reading are dropped rather than buffered without end.
//! * **Back-pressure.** Each socket has one reader and one writer fed by a bounded queue of
//!   [`CLIENT_QUEUE`] frames. Frames relayed from other peers (offers, answers, candidates,
//!   announcements, disconnects) may use all but [`RELAY_RESERVE`] slots: beyond that the
//!   *sender* pays (its request gets `-32006`, a fan-out skips that peer), the receiver is never
//!   dropped for a queue others filled. A client whose queue fills with the server's own frames
//!   to it (its responses, pings) is dropped rather than slowing anyone else; one that stops
//!   reading altogether is dropped by the keep-alive.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};

use super::auth::{AuthDecision, AuthHook, AuthRequest};
use super::protocol::{
    self, AnnounceParams, AnnounceResult, AnnouncedParams, Capability, DisconnectParams,
    DisconnectReason, DisconnectedParams, ForwardedResult, IceCandidateParams, Incoming, PeerInfo,
    RpcError, SdpParams, StateChangedParams, MAX_CANDIDATE_BYTES, MAX_FRAME_BYTES,
    MAX_REQUEST_ID_LEN, MAX_SDP_BYTES, MAX_USER_DATA_BYTES, MAX_USER_DATA_DEPTH,
    MAX_WS_MESSAGE_BYTES,
};
use crate::{Error, Result};

/// Frames queued for one client before it counts as too slow and is dropped.
pub const CLIENT_QUEUE: usize = 1024;
/// Slots of a client's queue kept for the server's own frames to it (responses, pings): frames
/// relayed from other peers are refused to their sender once fewer than this are free.
pub const RELAY_RESERVE: usize = CLIENT_QUEUE / 4;
/// Sessions (offers) remembered per pair of peers; the oldest is forgotten beyond this.
pub const MAX_SESSIONS_PER_PAIR: usize = 64;
/// Time allowed for the HTTP request head and the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a closing socket gets to flush its queue and close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Time `close()` waits for sockets to finish before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Largest HTTP request head inspected.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// tungstenite's write buffer: frames are written out once this much is pending.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Upper bound of one peer's entry in a `peer.announce` result (id, capabilities, user_data).
const PEER_ENTRY_BYTES: usize = MAX_USER_DATA_BYTES + 1024;
/// Most bytes read and discarded from a client being closed (see `drain`).
const DRAIN_BYTES: usize = 4 * MAX_WS_MESSAGE_BYTES;
/// Longest accepted keep-alive interval (keeps `Instant` arithmetic far from overflow).
const MAX_PING_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Server settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on (IP or host name).
    pub host: String,
    /// Port to listen on; 0 = any free port.
    pub port: u16,
    /// Most peers registered at once; further announces get `-32005`.
    pub max_peers: usize,
    /// Interval of the server's WebSocket pings; silence for twice this drops the client.
    pub ping_interval: Duration,
    /// How long an offer waits for its answer.
    pub offer_timeout: Duration,
    // -- Connection limits (hostile clients) --
    /// A WebSocket that has not sent a successful `peer.announce` by then is closed (1008).
    pub announce_timeout: Duration,
    /// Most open TCP connections from one remote IP (handshaking or not); extra ones get `503`.
    pub max_connections_per_ip: usize,
    /// Most open TCP connections in total; extra ones get `503`.
    pub max_connections: usize,
    /// Web origins allowed to open a WebSocket besides the default ones: requests without
    /// `Origin` (non-browser clients) and same-origin requests (`Origin` host == `Host`) are
    /// always allowed; `"*"` allows any. Other origins get `403`.
    pub allowed_origins: Vec<String>,
    /// Most control frames (ping, pong) a socket may send per second; beyond, it is closed (1008).
    pub max_control_frames_per_sec: u32,
    /// HTML served on `GET /` and `GET /index.html` (404 when `None`).
    pub http_page: Option<String>,
    /// Frames per second each socket may send (token bucket); frames over budget get `-32006`.
    pub message_budget: Budget,
    /// Bytes (of text frames) per second each socket may send; over budget gets `-32006`.
    pub byte_budget: Budget,
    /// `peer.announce` calls per second per socket (each one fans out to every peer).
    pub announce_budget: Budget,
    /// Frames refused for being over budget, net of what the message budget refills, after
    /// which the socket is closed with 1008 (policy violation).
    pub strikes_before_close: u32,
    /// Most unanswered offers one peer may have outstanding at once; more get `-32005`.
    pub max_pending_offers_per_sender: usize,
    /// Most unanswered offers waiting for one target at once; more get `-32005`.
    pub max_pending_offers_per_target: usize,
    /// Peer ids that only an announce presenting the given key (as `session_key`) can take,
    /// e.g. the id of the server owner's own peer.
    pub reserved_peer_ids: HashMap<String, String>,
    /// Who may announce which id (`None`: anyone, first come first served; fine on loopback
    /// only). See `signaling::auth`.
    pub auth: Option<AuthHook>,
}

/// A token bucket: `burst` tokens at most, refilled at `per_sec` tokens per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub per_sec: f64,
    pub burst: f64,
}

impl Budget {
    pub const fn new(per_sec: f64, burst: f64) -> Budget {
        Budget { per_sec, burst }
    }

    fn valid(&self) -> bool {
        self.per_sec.is_finite()
            && self.per_sec > 0.0
            && self.burst.is_finite()
            && self.burst >= 1.0
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            max_peers: 256,
            ping_interval: Duration::from_secs(20),
            offer_timeout: Duration::from_secs(30),
            announce_timeout: Duration::from_secs(10),
            max_connections_per_ip: 64,
            max_connections: 4096,
            allowed_origins: Vec::new(),
            max_control_frames_per_sec: 20,
            http_page: None,
            message_budget: Budget::new(200.0, 400.0),
            byte_budget: Budget::new(512.0 * 1024.0, 2.0 * 1024.0 * 1024.0),
            announce_budget: Budget::new(0.5, 5.0),
            strikes_before_close: 400,
            max_pending_offers_per_sender: 16,
            max_pending_offers_per_target: 64,
            reserved_peer_ids: HashMap::new(),
            auth: None,
        }
    }
}

/// What the server tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A peer announced (also on a re-announce from the same socket).
    PeerAnnounced {
        peer_id: String,
        capabilities: Vec<Capability>,
        user_data: Option<Value>,
    },
    /// A registered peer's socket closed.
    PeerLeft { peer_id: String },
}

/// A running signaling server. Dropping it stops the accept loop and closes every socket.
pub struct SignalingServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SignalingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl SignalingServer {
    /// Binds `host:port` and starts serving.
    pub async fn bind(config: ServerConfig) -> Result<SignalingServer> {
        if config.max_peers == 0 {
            return Err(Error::InvalidConfig("max_peers must be at least 1".into()));
        }
        if config.ping_interval.is_zero() || config.ping_interval > MAX_PING_INTERVAL {
            return Err(Error::InvalidConfig(
                "ping_interval must be between 1 ms and 24 h".into(),
            ));
        }
        for (name, b) in [
            ("message_budget", config.message_budget),
            ("byte_budget", config.byte_budget),
            ("announce_budget", config.announce_budget),
        ] {
            if !b.valid() {
                return Err(Error::InvalidConfig(format!(
                    "{name} needs per_sec > 0 and burst >= 1"
                )));
            }
        }
        if let Some(id) = config
            .reserved_peer_ids
            .iter()
            .find(|(id, key)| !protocol::is_valid_peer_id(id) || key.is_empty())
            .map(|(id, _)| id)
        {
            return Err(Error::InvalidConfig(format!(
                "reserved peer id {id:?} must be a valid peer id with a non-empty key"
            )));
        }
        check_connection_limits(&config)?;
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|e| {
                Error::Signaling(format!(
                    "cannot listen on {}:{}: {e}",
                    config.host, config.port
                ))
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::Signaling(format!("no local address: {e}")))?;
        let (events, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            events,
            closing: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            key_counter: AtomicU64::new(0),
            key_hasher: RandomState::new(),
            open: Mutex::new(OpenConns::default()),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(shared.clone(), listener, shutdown_rx));
        info!("signaling server listening on ws://{local_addr}");
        Ok(SignalingServer {
            shared,
            local_addr,
            shutdown,
            accept_task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// The address actually bound (the real port when `port` was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://ip:port` of the bound address.
    pub fn url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    /// Announce/leave events. Lagging receivers lose the oldest events.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.shared.events.subscribe()
    }

    /// The registered peer ids, sorted.
    pub fn peer_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.state().peers.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Stops accepting, closes every socket and waits for every task to end. Idempotent; once it
    /// returns, connecting fails.
    pub async fn close(&self) {
        let mut task = self.accept_task.lock().await;
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shutdown.send_replace(true);
        if let Some(handle) = task.take() {
            let _ = handle.await;
            info!("signaling server on {} closed", self.local_addr);
        }
    }
}

impl Drop for SignalingServer {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shutdown.send_replace(true);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

struct Shared {
    config: ServerConfig,
    state: Mutex<State>,
    events: broadcast::Sender<ServerEvent>,
    closing: AtomicBool,
    next_conn: AtomicU64,
    key_counter: AtomicU64,
    key_hasher: RandomState,
    open: Mutex<OpenConns>,
}

/// Open TCP connections, in total and per remote IP.
#[derive(Default)]
struct OpenConns {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One counted TCP connection; dropping it (even by aborting its task) releases the slot.
struct ConnSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl ConnSlot {
    /// Takes a slot for `ip`, or `None` when a connection limit is reached.
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<ConnSlot> {
        let ip = ip.to_canonical();
        let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= shared.config.max_connections
            || from_ip >= shared.config.max_connections_per_ip
        {
            return None;
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Some(ConnSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Validates the connection-level options of `config`.
fn check_connection_limits(config: &ServerConfig) -> Result<()> {
    if config.announce_timeout.is_zero() || config.announce_timeout > MAX_PING_INTERVAL {
        return Err(Error::InvalidConfig(
            "announce_timeout must be between 1 ms and 24 h".into(),
        ));
    }
    if config.max_connections_per_ip == 0 {
        return Err(Error::InvalidConfig(
            "max_connections_per_ip must be at least 1".into(),
        ));
    }
    if config.max_connections == 0 {
        return Err(Error::InvalidConfig(
            "max_connections must be at least 1".into(),
        ));
    }
    if config.max_control_frames_per_sec == 0 {
        return Err(Error::InvalidConfig(
            "max_control_frames_per_sec must be at least 1".into(),
        ));
    }
    for origin in &config.allowed_origins {
        if origin != "*" && !is_valid_origin(origin) {
            return Err(Error::InvalidConfig(format!(
                "allowed_origins: {origin:?} is not \"*\" or an origin like \"https://example.com:8443\""
            )));
        }
    }
    Ok(())
}

/// `scheme://host[:port]`, nothing else (no path, no whitespace).
fn is_valid_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !authority.is_empty()
        && authority.len() <= 255
        && authority
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '@'))
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, Conn>,
    peers: HashMap<String, Registration>,
    /// Keyed by the two peer ids, sorted.
    pairs: HashMap<(String, String), Pair>,
}

struct Conn {
    tx: mpsc::Sender<Message>,
    kick: Arc<Notify>,
    peer_id: Option<String>,
    limits: Limits,
    /// With authentication: the last decision on an announce from this socket.
    auth: Option<AuthDecision>,
}

/// What authentication learns of a socket at its handshake.
#[derive(Debug, Clone)]
struct Handshake {
    addr: SocketAddr,
    origin: Option<String>,
    /// The URL's `token` query parameter (how a browser presents one).
    token: Option<String>,
}

/// Longest an authenticator may take over one announce before it counts as a refusal.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// One socket's budgets.
struct Limits {
    messages: Bucket,
    bytes: Bucket,
    announces: Bucket,
    /// Refused frames, drained at the message budget's rate.
    strikes: Bucket,
}

impl Limits {
    fn new(c: &ServerConfig) -> Limits {
        Limits {
            messages: Bucket::full(c.message_budget),
            bytes: Bucket::full(c.byte_budget),
            announces: Bucket::full(c.announce_budget),
            strikes: Bucket {
                budget: Budget::new(c.message_budget.per_sec, f64::from(c.strikes_before_close)),
                tokens: 0.0,
                at: Instant::now(),
            },
        }
    }
}

struct Bucket {
    budget: Budget,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(budget: Budget) -> Bucket {
        Bucket {
            budget,
            tokens: budget.burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.budget.per_sec).min(self.budget.burst);
    }

    /// Used as a leaky counter: drains at `per_sec`, adds one; true once above `burst`.
    fn strike(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens - dt * self.budget.per_sec).max(0.0) + 1.0;
        self.tokens > self.budget.burst
    }

    /// Takes `n` tokens if there are that many (a cost above the burst needs a full bucket).
    fn take(&mut self, n: f64) -> bool {
        self.refill();
        let n = n.min(self.budget.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// What the reader does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Continue,
    /// Persistently over budget: close with 1008.
    Close,
}

struct Registration {
    conn: u64,
    capabilities: Vec<Capability>,
    user_data: Option<Value>,
    session_key: String,
}

#[derive(Default)]
struct Pair {
    sessions: VecDeque<Session>,
}

struct Session {
    request_id: String,
    offerer: String,
    answerer: String,
    answered: bool,
    offered_at: Instant,
}

impl Session {
    fn expired(&self, offer_timeout: Duration) -> bool {
        !self.answered && self.offered_at.elapsed() > offer_timeout
    }
}

fn pair_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Queues a frame from another peer for a socket, never kicking it: when fewer than
/// [`RELAY_RESERVE`] slots are free the frame is refused and the sender pays (`-32006`).
fn relay(tx: &mpsc::Sender<Message>, to: &str, text: String) -> std::result::Result<(), RpcError> {
    let busy = || {
        RpcError::new(
            protocol::RATE_LIMITED,
            format!("peer {to} is busy (its queue is full): retry later"),
        )
    };
    if tx.capacity() <= RELAY_RESERVE {
        return Err(busy());
    }
    match tx.try_send(Message::text(text)) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(busy()),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            Err(RpcError::peer_not_found(format!("peer unreachable: {to}")))
        }
    }
}

/// Queues `msg` for a socket; a full queue kicks that socket. Returns whether it was queued.
fn queue(tx: &mpsc::Sender<Message>, kick: &Notify, msg: Message) -> bool {
    match tx.try_send(msg) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            warn!("signaling client too slow (queue full): dropping it");
            kick.notify_one();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

impl State {
    /// Relays a frame from another peer to `peer_id` (see [`relay`]): the receiver is never
    /// dropped for it.
    fn relay_to_peer(&self, peer_id: &str, text: String) -> std::result::Result<(), RpcError> {
        match self
            .peers
            .get(peer_id)
            .and_then(|r| self.conns.get(&r.conn))
        {
            Some(c) => relay(&c.tx, peer_id, text),
            None => Err(RpcError::peer_not_found(format!(
                "peer unreachable: {peer_id}"
            ))),
        }
    }

    /// Unanswered, unexpired offers from `offerer` (when `Some`) to `answerer` (when `Some`).
    fn pending_offers(
        &self,
        offerer: Option<&str>,
        answerer: Option<&str>,
        timeout: Duration,
    ) -> usize {
        self.pairs
            .values()
            .flat_map(|p| p.sessions.iter())
            .filter(|s| {
                !s.answered
                    && !s.expired(timeout)
                    && offerer.is_none_or(|o| s.offerer == o)
                    && answerer.is_none_or(|a| s.answerer == a)
            })
            .count()
    }

    /// The peer id announced on `conn`, or `-32602` ("not announced").
    fn announced(&self, conn: u64) -> std::result::Result<String, RpcError> {
        self.conns
            .get(&conn)
            .and_then(|c| c.peer_id.clone())
            .ok_or_else(|| RpcError::invalid_params("not announced: call peer.announce first"))
    }

    /// The peer id announced on `conn`, which `from` must equal.
    fn check_from(&self, conn: u64, from: &str) -> std::result::Result<String, RpcError> {
        let me = self.announced(conn)?;
        if from != me {
            return Err(RpcError::invalid_params(format!(
                "from {from:?} does not match this socket's peer_id {me:?}"
            )));
        }
        Ok(me)
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters more than refusing service; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session_key(&self, peer_id: &str, conn: u64) -> String {
        let n = self.key_counter.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut out = String::with_capacity(32);
        for salt in [0x9e37_79b9_7f4a_7c15_u64, 0xc2b2_ae3d_27d4_eb4f] {
            let h = self.key_hasher.hash_one((salt, n, t, conn, peer_id));
            let _ = write!(out, "{h:016x}");
        }
        out
    }

    fn emit(&self, event: ServerEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// Forgets a socket: its registration, its pairs (telling the other peers), its queue.
    fn remove_conn(&self, conn: u64) {
        let mut st = self.state();
        let Some(c) = st.conns.remove(&conn) else {
            return;
        };
        let Some(peer_id) = c.peer_id else {
            return;
        };
        if st.peers.get(&peer_id).map(|r| r.conn) == Some(conn) {
            st.peers.remove(&peer_id);
        }
        let keys: Vec<(String, String)> = st
            .pairs
            .keys()
            .filter(|(a, b)| *a == peer_id || *b == peer_id)
            .cloned()
            .collect();
        let closing = self.closing.load(Ordering::SeqCst);
        for key in keys {
            let Some(pair) = st.pairs.remove(&key) else {
                continue;
            };
            if closing {
                continue;
            }
            let other = if key.0 == peer_id { &key.1 } else { &key.0 };
            let params = DisconnectedParams {
                from: peer_id.clone(),
                reason: DisconnectReason::NetworkError,
                request_id: pair.sessions.back().map(|s| s.request_id.clone()),
            };
            match st.relay_to_peer(
                other,
                protocol::notification(protocol::DISCONNECTED, &params),
            ) {
                Ok(()) => debug!("told {other} that {peer_id} left"),
                Err(e) => debug!("cannot tell {other} that {peer_id} left: {}", e.message),
            }
        }
        drop(st);
        info!("peer {peer_id} left");
        self.emit(ServerEvent::PeerLeft { peer_id });
    }

    // -----------------------------------------------------------------------------------------
    // Dispatch
    // -----------------------------------------------------------------------------------------

    /// Charges one frame of `bytes` to the socket's budgets. `Err(verdict)` when over budget.
    fn charge(&self, conn: u64, bytes: usize) -> std::result::Result<(), Verdict> {
        let mut st = self.state();
        let Some(c) = st.conns.get_mut(&conn) else {
            return Err(Verdict::Continue);
        };
        let l = &mut c.limits;
        // Both buckets are charged only when both have room.
        l.messages.refill();
        l.bytes.refill();
        let cost = (bytes as f64).min(l.bytes.budget.burst);
        if l.messages.tokens >= 1.0 && l.bytes.tokens >= cost {
            l.messages.tokens -= 1.0;
            l.bytes.tokens -= cost;
            return Ok(());
        }
        Err(if l.strikes.strike() {
            Verdict::Close
        } else {
            Verdict::Continue
        })
    }

    /// With authentication, before an announce is handled: asks the authenticator (bounded by
    /// [`AUTH_TIMEOUT`]) and records its decision on the socket, which `announce` enforces. An
    /// `AllowAs` decision rewrites the announce's `peer_id` (the returned frame). Other frames,
    /// and announces the socket has no budget left for, are not looked at.
    async fn authenticate(
        &self,
        auth: &AuthHook,
        conn: u64,
        hs: &Handshake,
        text: &str,
    ) -> Option<String> {
        // Only announces are looked at: other frames are not parsed a second time.
        if text.len() > MAX_FRAME_BYTES || !text.contains(protocol::ANNOUNCE) {
            return None;
        }
        let mut frame: Value = serde_json::from_str(text).ok()?;
        if frame.get("method").and_then(Value::as_str) != Some(protocol::ANNOUNCE) {
            return None;
        }
        {
            let mut st = self.state();
            let c = st.conns.get_mut(&conn)?;
            c.auth = None;
            c.limits.announces.refill();
            if c.limits.announces.tokens < 1.0 {
                return None; // refused as rate limited, without costing the authenticator
            }
        }
        let params = frame.get("params");
        let text_of = |key: &str| {
            params
                .and_then(|p| p.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let request = AuthRequest {
            peer_id: text_of("peer_id").unwrap_or_default(),
            token: text_of("token").or_else(|| hs.token.clone()),
            origin: hs.origin.clone(),
            remote_address: hs.addr,
        };
        let decision = match tokio::time::timeout(AUTH_TIMEOUT, auth.0.authenticate(&request)).await
        {
            Ok(d) => d,
            Err(_) => AuthDecision::Refuse("authentication timed out".into()),
        };
        if let AuthDecision::Refuse(why) = &decision {
            debug!(conn, "announce of {:?} refused: {why}", request.peer_id);
        }
        let rewrite = match &decision {
            AuthDecision::AllowAs(id) if *id != request.peer_id => Some(id.clone()),
            _ => None,
        };
        if let Some(c) = self.state().conns.get_mut(&conn) {
            c.auth = Some(decision);
        }
        let id = rewrite?;
        frame
            .get_mut("params")?
            .as_object_mut()?
            .insert("peer_id".into(), Value::String(id));
        Some(frame.to_string())
    }

    /// Handles one text frame; `Verdict::Close` when the socket must be closed with 1008.
    fn handle_text(
        &self,
        conn: u64,
        tx: &mpsc::Sender<Message>,
        kick: &Notify,
        text: &str,
    ) -> Verdict {
        let reply = |frame: String| {
            queue(tx, kick, Message::text(frame));
        };
        if let Err(verdict) = self.charge(conn, text.len()) {
            if verdict == Verdict::Close {
                warn!(
                    conn,
                    "signaling client persistently over its budget: closing it"
                );
                return Verdict::Close;
            }
            let err = RpcError::new(
                protocol::RATE_LIMITED,
                "rate limited: over this socket's message/byte budget",
            );
            // Only a request gets an answer; finding its id costs a parse, bounded by the
            // frame limit.
            if text.len() <= MAX_FRAME_BYTES {
                if let Ok(Incoming::Request { id, .. }) = protocol::parse_frame(text) {
                    reply(protocol::response_err(Some(&id), &err));
                }
            }
            return Verdict::Continue;
        }
        self.handle_frame(conn, &reply, text);
        Verdict::Continue
    }

    fn handle_frame(&self, conn: u64, reply: &dyn Fn(String), text: &str) {
        if text.len() > MAX_FRAME_BYTES {
            let err = RpcError::invalid_params(format!(
                "frame of {} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
                text.len()
            ));
            let id = match protocol::parse_frame(text) {
                Ok(Incoming::Request { id, .. }) => Some(id),
                _ => None,
            };
            debug!(conn, "oversize frame ({} bytes) refused", text.len());
            reply(protocol::response_err(id.as_ref(), &err));
            return;
        }
        match protocol::parse_frame(text) {
            Err((id, err)) => {
                debug!(conn, "malformed frame: {}", err.message);
                reply(protocol::response_err(id.as_ref(), &err));
            }
            Ok(Incoming::Response { id, .. }) => {
                debug!(
                    conn,
                    "ignoring a response (id {id}): the server sends no requests"
                );
            }
            Ok(Incoming::Request { id, method, params }) => {
                let frame = match self.dispatch(conn, &method, params) {
                    Ok(result) => protocol::response_ok(&id, result),
                    Err(err) => {
                        debug!(conn, "{method} refused: {} ({})", err.message, err.code);
                        protocol::response_err(Some(&id), &err)
                    }
                };
                reply(frame);
            }
            Ok(Incoming::Notification { method, params }) => {
                if let Err(err) = self.dispatch(conn, &method, params) {
                    debug!(
                        conn,
                        "{method} notification dropped: {} ({})", err.message, err.code
                    );
                }
            }
        }
    }

    fn dispatch(
        &self,
        conn: u64,
        method: &str,
        params: Value,
    ) -> std::result::Result<Value, RpcError> {
        match method {
            protocol::ANNOUNCE => self.announce(conn, parse_params(params)?),
            protocol::OFFER => self.offer(conn, parse_params(params)?),
            protocol::ANSWER => self.answer(conn, parse_params(params)?),
            protocol::ICE_CANDIDATE => self.ice_candidate(conn, parse_params(params)?),
            protocol::STATE_CHANGED => self.state_changed(conn, parse_params(params)?),
            protocol::DISCONNECT => self.disconnect(conn, parse_params(params)?),
            other => Err(RpcError::method_not_found(other)),
        }
    }

    fn announce(&self, conn: u64, p: AnnounceParams) -> std::result::Result<Value, RpcError> {
        if !protocol::is_valid_peer_id(&p.peer_id) {
            return Err(RpcError::invalid_params(
                "invalid peer_id: must match ^[A-Za-z0-9_-]{1,64}$",
            ));
        }
        if p.capabilities.is_empty() {
            return Err(RpcError::invalid_params("capabilities must not be empty"));
        }
        let mut capabilities: Vec<Capability> = Vec::with_capacity(p.capabilities.len());
        for c in p.capabilities {
            if !capabilities.contains(&c) {
                capabilities.push(c);
            }
        }
        if let Some(ud) = &p.user_data {
            let size = serde_json::to_string(ud)
                .map(|s| s.len())
                .unwrap_or(usize::MAX);
            if size > MAX_USER_DATA_BYTES {
                return Err(RpcError::invalid_params(format!(
                    "user_data of {size} bytes exceeds the {MAX_USER_DATA_BYTES}-byte limit"
                )));
            }
            // Checked as it will be sent: `user_data` itself, whatever it is nested in.
            let depth = protocol::json_depth(ud);
            if depth > MAX_USER_DATA_DEPTH {
                return Err(RpcError::invalid_params(format!(
                    "user_data nested {depth} deep exceeds the limit of {MAX_USER_DATA_DEPTH}"
                )));
            }
        }
        let peer_id = p.peer_id;

        let mut st = self.state();
        if self.config.auth.is_some() {
            match st.conns.get(&conn).and_then(|c| c.auth.as_ref()) {
                Some(AuthDecision::AllowAs(id)) if *id == peer_id => {}
                Some(AuthDecision::Allow) => {}
                Some(AuthDecision::Refuse(why)) => {
                    return Err(RpcError::new(
                        protocol::UNAUTHORIZED,
                        format!("unauthorized: {why}"),
                    ))
                }
                _ => {
                    return Err(RpcError::new(
                        protocol::UNAUTHORIZED,
                        "unauthorized: not authenticated",
                    ))
                }
            }
        }
        let current = match st.conns.get_mut(&conn) {
            Some(c) => {
                // Every announce fans out to every peer: it has a budget of its own.
                if !c.limits.announces.take(1.0) {
                    return Err(RpcError::new(
                        protocol::RATE_LIMITED,
                        "rate limited: too many announces on this socket",
                    ));
                }
                c.peer_id.clone()
            }
            None => return Err(RpcError::internal("socket is closing")),
        };
        if let Some(current) = &current {
            if *current != peer_id {
                return Err(RpcError::invalid_params(format!(
                    "this socket is already announced as {current:?}"
                )));
            }
        }
        let presented = p.session_key.as_deref();
        let session_key = match st.peers.get(&peer_id) {
            Some(r) if r.conn != conn && presented == Some(r.session_key.as_str()) => {
                // Reclaim: the holder of the key wins over the stale registration, whose socket
                // is unregistered (its pairs carry over to this socket) and closed.
                let (old, key) = (r.conn, r.session_key.clone());
                if let Some(c) = st.conns.get_mut(&old) {
                    c.peer_id = None;
                    c.kick.notify_one();
                }
                info!(
                    conn,
                    "peer {peer_id} reclaimed from socket {old} with its session key"
                );
                key
            }
            Some(r) if r.conn != conn => {
                return Err(RpcError::peer_not_found(format!(
                    "peer_id {peer_id:?} is already registered"
                )));
            }
            Some(r) => r.session_key.clone(),
            None => {
                if st.peers.len() >= self.config.max_peers {
                    return Err(RpcError::new(
                        protocol::LIMIT_EXCEEDED,
                        format!("peer limit ({}) reached", self.config.max_peers),
                    ));
                }
                match self.config.reserved_peer_ids.get(&peer_id) {
                    Some(key) if presented == Some(key.as_str()) => key.clone(),
                    Some(_) => {
                        return Err(RpcError::peer_not_found(format!(
                            "peer_id {peer_id:?} is reserved"
                        )));
                    }
                    None => self.session_key(&peer_id, conn),
                }
            }
        };
        st.peers.insert(
            peer_id.clone(),
            Registration {
                conn,
                capabilities: capabilities.clone(),
                user_data: p.user_data.clone(),
                session_key: session_key.clone(),
            },
        );
        if let Some(c) = st.conns.get_mut(&conn) {
            c.peer_id = Some(peer_id.clone());
        }

        let mut peers: Vec<PeerInfo> = st
            .peers
            .iter()
            .filter(|(id, _)| **id != peer_id)
            .map(|(id, r)| PeerInfo {
                peer_id: id.clone(),
                capabilities: r.capabilities.clone(),
                user_data: r.user_data.clone(),
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));

        let now = protocol::now_iso8601();
        let announced = protocol::notification(
            protocol::ANNOUNCED,
            AnnouncedParams {
                peer_id: peer_id.clone(),
                capabilities: capabilities.clone(),
                user_data: p.user_data.clone(),
                announced_at: now.clone(),
            },
        );
        for (id, r) in &st.peers {
            if *id != peer_id {
                if let Some(c) = st.conns.get(&r.conn) {
                    // A peer whose queue is full misses this announcement; it is not dropped.
                    if let Err(e) = relay(&c.tx, id, announced.clone()) {
                        debug!("announcement of {peer_id} not sent to {id}: {}", e.message);
                    }
                }
            }
        }
        drop(st);

        info!(conn, "peer {peer_id} announced {capabilities:?}");
        self.emit(ServerEvent::PeerAnnounced {
            peer_id: peer_id.clone(),
            capabilities,
            user_data: p.user_data,
        });
        to_result(AnnounceResult {
            status: "registered".into(),
            server_time: now,
            peer_id,
            session_key,
            peers,
        })
    }

    fn offer(&self, conn: u64, p: SdpParams) -> std::result::Result<Value, RpcError> {
        let mut st = self.state();
        let me = st.check_from(conn, &p.from)?;
        check_sdp_params(&p)?;
        if p.to == me {
            return Err(RpcError::new(
                protocol::OFFER_INVALID,
                "cannot send an offer to oneself",
            ));
        }
        if p.sdp.trim().is_empty() {
            return Err(RpcError::new(protocol::OFFER_INVALID, "empty sdp"));
        }
        if !st.peers.contains_key(&p.to) {
            return Err(RpcError::peer_not_found(format!(
                "peer not found: {}",
                p.to
            )));
        }
        let timeout = self.config.offer_timeout;
        // A re-offer under the same request id replaces its pending session: it is not counted.
        let replaced = st.pairs.get(&pair_key(&me, &p.to)).is_some_and(|pair| {
            pair.sessions.iter().any(|s| {
                s.request_id == p.request_id
                    && s.offerer == me
                    && !s.answered
                    && !s.expired(timeout)
            })
        }) as usize;
        let sent = st.pending_offers(Some(&me), None, timeout) - replaced;
        if sent >= self.config.max_pending_offers_per_sender {
            return Err(RpcError::new(
                protocol::LIMIT_EXCEEDED,
                format!(
                    "too many pending offers: {me} has {sent} unanswered (limit {})",
                    self.config.max_pending_offers_per_sender
                ),
            ));
        }
        let waiting = st.pending_offers(None, Some(&p.to), timeout) - replaced;
        if waiting >= self.config.max_pending_offers_per_target {
            return Err(RpcError::new(
                protocol::LIMIT_EXCEEDED,
                format!(
                    "too many pending offers: {} has {waiting} unanswered waiting (limit {})",
                    p.to, self.config.max_pending_offers_per_target
                ),
            ));
        }
        st.relay_to_peer(&p.to, protocol::notification(protocol::OFFER, &p))?;
        let pair = st.pairs.entry(pair_key(&me, &p.to)).or_default();
        pair.sessions
            .retain(|s| !(s.expired(timeout) || (s.request_id == p.request_id && s.offerer == me)));
        while pair.sessions.len() >= MAX_SESSIONS_PER_PAIR {
            pair.sessions.pop_front();
        }
        pair.sessions.push_back(Session {
            request_id: p.request_id.clone(),
            offerer: me.clone(),
            answerer: p.to.clone(),
            answered: false,
            offered_at: Instant::now(),
        });
        drop(st);
        debug!("offer {} forwarded {me} -> {}", p.request_id, p.to);
        to_result(ForwardedResult {
            status: "forwarded".into(),
            request_id: p.request_id,
        })
    }

    fn answer(&self, conn: u64, p: SdpParams) -> std::result::Result<Value, RpcError> {
        let mut st = self.state();
        let me = st.check_from(conn, &p.from)?;
        check_sdp_params(&p)?;
        if p.to == me {
            return Err(RpcError::new(
                protocol::ANSWER_INVALID,
                "cannot send an answer to oneself",
            ));
        }
        if p.sdp.trim().is_empty() {
            return Err(RpcError::new(protocol::ANSWER_INVALID, "empty sdp"));
        }
        if !st.peers.contains_key(&p.to) {
            return Err(RpcError::peer_not_found(format!(
                "peer not found: {}",
                p.to
            )));
        }
        let timeout = self.config.offer_timeout;
        let key = pair_key(&me, &p.to);
        let no_offer = || {
            RpcError::new(
                protocol::ANSWER_INVALID,
                format!("no pending offer {:?} from {}", p.request_id, p.to),
            )
        };
        let index = {
            let pair = st.pairs.get_mut(&key).ok_or_else(no_offer)?;
            let index = pair
                .sessions
                .iter()
                .position(|s| s.request_id == p.request_id && s.offerer == p.to && s.answerer == me)
                .ok_or_else(no_offer)?;
            let s = &pair.sessions[index];
            if s.answered {
                return Err(RpcError::new(
                    protocol::ANSWER_INVALID,
                    format!("offer {:?} was already answered", p.request_id),
                ));
            }
            if s.expired(timeout) {
                pair.sessions.remove(index);
                return Err(RpcError::new(
                    protocol::ANSWER_INVALID,
                    format!("offer {:?} expired", p.request_id),
                ));
            }
            index
        };
        st.relay_to_peer(&p.to, protocol::notification(protocol::ANSWER, &p))?;
        if let Some(s) = st
            .pairs
            .get_mut(&key)
            .and_then(|pair| pair.sessions.get_mut(index))
        {
            s.answered = true;
        }
        drop(st);
        debug!("answer {} forwarded {me} -> {}", p.request_id, p.to);
        to_result(ForwardedResult {
            status: "forwarded".into(),
            request_id: p.request_id,
        })
    }

    fn ice_candidate(
        &self,
        conn: u64,
        p: IceCandidateParams,
    ) -> std::result::Result<Value, RpcError> {
        let st = self.state();
        let me = st.check_from(conn, &p.from)?;
        check_target(&p.to)?;
        if p.candidate.len() > MAX_CANDIDATE_BYTES {
            return Err(RpcError::new(
                protocol::ICE_CANDIDATE_INVALID,
                format!("candidate exceeds {MAX_CANDIDATE_BYTES} bytes"),
            ));
        }
        if p.candidate.contains(['\r', '\n']) {
            return Err(RpcError::new(
                protocol::ICE_CANDIDATE_INVALID,
                "candidate must be a single line",
            ));
        }
        if p.to == me {
            return Err(RpcError::new(
                protocol::ICE_CANDIDATE_INVALID,
                "cannot send a candidate to oneself",
            ));
        }
        if !st.peers.contains_key(&p.to) {
            return Err(RpcError::peer_not_found(format!(
                "peer not found: {}",
                p.to
            )));
        }
        // Candidates travel only within an offer/answer exchange between the two peers.
        let timeout = self.config.offer_timeout;
        let Some(pair) = st
            .pairs
            .get(&pair_key(&me, &p.to))
            .filter(|pair| pair.sessions.iter().any(|s| !s.expired(timeout)))
        else {
            return Err(RpcError::new(
                protocol::ICE_CANDIDATE_INVALID,
                format!("no offer/answer exchange between {me} and {}", p.to),
            ));
        };
        if let Some(rid) = &p.request_id {
            let known = pair
                .sessions
                .iter()
                .any(|s| s.request_id == *rid && !s.expired(timeout));
            if !known {
                debug!(
                    "candidate {me} -> {} for unknown request {rid:?} dropped",
                    p.to
                );
                return Ok(json!({ "status": "dropped" }));
            }
        }
        st.relay_to_peer(&p.to, protocol::notification(protocol::ICE_CANDIDATE, &p))?;
        Ok(json!({ "status": "forwarded" }))
    }

    fn state_changed(
        &self,
        conn: u64,
        p: StateChangedParams,
    ) -> std::result::Result<Value, RpcError> {
        let me = self.state().check_from(conn, &p.from)?;
        debug!(
            "state of {me} -> {}: connection={:?} ice={:?} gathering={:?} signaling={:?} request={:?}",
            p.to,
            p.connection_state,
            p.ice_connection_state,
            p.ice_gathering_state,
            p.signaling_state,
            p.request_id
        );
        Ok(json!({ "status": "accepted" }))
    }

    fn disconnect(&self, conn: u64, p: DisconnectParams) -> std::result::Result<Value, RpcError> {
        let mut st = self.state();
        let me = st.check_from(conn, &p.from)?;
        check_target(&p.to)?;
        st.pairs.remove(&pair_key(&me, &p.to));
        if !st.peers.contains_key(&p.to) {
            return Err(RpcError::peer_not_found(format!(
                "peer not found: {}",
                p.to
            )));
        }
        let params = DisconnectedParams {
            from: me.clone(),
            reason: p.reason,
            request_id: p.request_id,
        };
        st.relay_to_peer(
            &p.to,
            protocol::notification(protocol::DISCONNECTED, &params),
        )?;
        drop(st);
        debug!(
            "{me} disconnected from {} ({:?}, {:?})",
            p.to, p.reason, p.details
        );
        Ok(json!({ "status": "forwarded" }))
    }
}

fn parse_params<T: DeserializeOwned>(params: Value) -> std::result::Result<T, RpcError> {
    serde_json::from_value(params)
        .map_err(|e| RpcError::invalid_params(format!("invalid params: {e}")))
}

fn to_result(v: impl serde::Serialize) -> std::result::Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::internal(format!("cannot serialize result: {e}")))
}

fn check_target(to: &str) -> std::result::Result<(), RpcError> {
    if protocol::is_valid_peer_id(to) {
        Ok(())
    } else {
        Err(RpcError::invalid_params(
            "invalid to: must match ^[A-Za-z0-9_-]{1,64}$",
        ))
    }
}

fn check_sdp_params(p: &SdpParams) -> std::result::Result<(), RpcError> {
    check_target(&p.to)?;
    if p.sdp.len() > MAX_SDP_BYTES {
        return Err(RpcError::invalid_params(format!(
            "sdp of {} bytes exceeds the {MAX_SDP_BYTES}-byte limit",
            p.sdp.len()
        )));
    }
    if p.request_id.is_empty() || p.request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(RpcError::invalid_params(format!(
            "request_id must be 1 to {MAX_REQUEST_ID_LEN} bytes"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

/// Resolves once shutdown is signalled (or the server is gone).
async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|closed| *closed).await;
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown_signalled(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => match ConnSlot::take(&shared, addr.ip()) {
                    Some(slot) => {
                        let _ = stream.set_nodelay(true);
                        tasks.spawn(serve_socket(
                            shared.clone(),
                            stream,
                            addr,
                            slot,
                            shutdown.clone(),
                        ));
                    }
                    None => refuse(stream, addr),
                },
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // Aborted sockets skipped their own clean-up.
    let mut st = shared.state();
    st.conns.clear();
    st.peers.clear();
    st.pairs.clear();
}

/// Turns away a connection over a connection limit: one non-blocking `503`, then close. No task
/// and no buffer is spent on it.
fn refuse(stream: TcpStream, addr: SocketAddr) {
    debug!("refusing {addr}: connection limit reached");
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 20\r\nConnection: close\r\n\r\ntoo many connections",
    );
}

/// The tungstenite settings of every socket.
fn ws_config(config: &ServerConfig) -> WebSocketConfig {
    // The largest frame the server sends is a `peer.announce` result listing every peer, or a
    // relayed frame (under MAX_WS_MESSAGE_BYTES); the write buffer must hold one of those on top
    // of `WRITE_BUFFER_BYTES`. Beyond that, tungstenite drops the pongs it would owe a client
    // that pings without reading instead of buffering them without end.
    let largest = config
        .max_peers
        .saturating_mul(PEER_ENTRY_BYTES)
        .max(MAX_WS_MESSAGE_BYTES);
    WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WS_MESSAGE_BYTES))
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES.saturating_add(largest))
}

/// A counted WebSocket on a TCP stream whose head was already read.
type Ws = WebSocketStream<HeadStream>;

/// One accepted TCP connection: plain HTTP, or a WebSocket client until it goes.
async fn serve_socket(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    addr: SocketAddr,
    _slot: ConnSlot,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshake = async {
        let (buf, head_len) = read_head(&mut stream).await?;
        let req = RequestHead::parse(&buf[..head_len]);
        if !req.websocket || !req.complete {
            serve_http(stream, &req, shared.config.http_page.as_deref()).await;
            return None;
        }
        if !origin_allowed(&shared.config.allowed_origins, &req) {
            debug!("websocket from {addr} refused: origin {:?}", req.origin);
            let response = HttpResponse::plain("403 Forbidden", "origin not allowed\n");
            send_http(stream, &req, &response).await;
            return None;
        }
        // tungstenite parses the head again from the bytes already read.
        let stream = HeadStream {
            head: buf,
            pos: 0,
            inner: stream,
        };
        let hs = Handshake {
            addr,
            origin: req.origin.clone(),
            token: req.token.clone(),
        };
        match tokio_tungstenite::accept_async_with_config(stream, Some(ws_config(&shared.config)))
            .await
        {
            Ok(ws) => Some((ws, hs)),
            Err(e) => {
                debug!("websocket handshake with {addr} failed: {e}");
                None
            }
        }
    };
    let (ws, hs) = tokio::select! {
        ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match ws {
            Ok(Some(ws)) => ws,
            Ok(None) => return,
            Err(_) => {
                debug!("handshake with {addr} timed out");
                return;
            }
        },
        _ = shutdown_signalled(&mut shutdown) => return,
    };

    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let kick = Arc::new(Notify::new());
    shared.state().conns.insert(
        conn,
        Conn {
            tx: tx.clone(),
            kick: kick.clone(),
            peer_id: None,
            limits: Limits::new(&shared.config),
            auth: None,
        },
    );
    debug!(conn, "websocket client {addr} connected");

    let (sink, mut stream) = ws.split();
    let mut writer = std::pin::pin!(write_loop(sink, rx));
    let end = {
        let reader = read_loop(&shared, conn, &hs, &mut stream, &tx, &kick, shutdown);
        tokio::select! {
            end = reader => end,
            _ = &mut writer => End::WriterDone,
        }
    };
    debug!(conn, "websocket client {addr} ends: {end:?}");

    let close = |code: CloseCode, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    let farewell = match &end {
        End::Shutdown => Some(close(CloseCode::Away, "server shutting down")),
        End::Idle => Some(close(CloseCode::Away, "keep-alive timeout")),
        End::NoAnnounce => Some(close(CloseCode::Policy, "no peer.announce in time")),
        End::Flood => Some(close(CloseCode::Policy, "too many control frames")),
        End::TooBig => Some(close(CloseCode::Size, "message too big")),
        End::BadUtf8 => Some(close(CloseCode::Invalid, "invalid utf-8")),
        End::Failed => Some(close(CloseCode::Protocol, "protocol error")),
        End::OverBudget => Some(close(CloseCode::Policy, "rate limit exceeded")),
        End::Kicked | End::PeerClosed | End::WriterDone => None,
    };
    if let Some(msg) = farewell {
        let _ = tx.try_send(msg);
    }
    shared.remove_conn(conn);
    drop(tx);
    if !matches!(end, End::Kicked | End::WriterDone) {
        let deadline = Instant::now() + CLOSE_GRACE;
        let sink = tokio::time::timeout_at(deadline, writer).await;
        // A client we close on is often still sending (the rest of a huge frame, pings):
        // closing with unread bytes would reset the connection and lose the close frame, so
        // read and discard what comes until it closes or the grace ends.
        let still_sending = !matches!(end, End::Shutdown | End::PeerClosed);
        if let (Ok(sink), true) = (sink, still_sending) {
            if let Ok(ws) = stream.reunite(sink) {
                drain(ws.into_inner(), deadline).await;
            }
        }
    }
}

/// Half-closes `stream` and discards what the client still sends, until it closes, `deadline`
/// or `DRAIN_BYTES`.
async fn drain(mut stream: HeadStream, deadline: Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        let _ = stream.inner.shutdown().await;
        let mut sink = [0u8; 8192];
        let mut left = DRAIN_BYTES;
        while left > 0 {
            match stream.inner.read(&mut sink).await {
                Ok(n) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
    })
    .await;
}

#[derive(Debug)]
enum End {
    Shutdown,
    Kicked,
    Idle,
    NoAnnounce,
    Flood,
    PeerClosed,
    TooBig,
    BadUtf8,
    Failed,
    WriterDone,
    /// Persistently over its budgets (closed with 1008).
    OverBudget,
}

async fn read_loop(
    shared: &Shared,
    conn: u64,
    hs: &Handshake,
    stream: &mut SplitStream<Ws>,
    tx: &mpsc::Sender<Message>,
    kick: &Notify,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let every = shared.config.ping_interval;
    let silence = every * 2;
    let mut ping = tokio::time::interval_at(Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let idle = tokio::time::sleep(silence);
    tokio::pin!(idle);
    let announce_by = tokio::time::sleep(shared.config.announce_timeout);
    tokio::pin!(announce_by);
    let mut awaiting_announce = true;
    // Control frames received in the current one-second window.
    let mut window = Instant::now();
    let mut control = 0u32;
    loop {
        tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => return End::Shutdown,
            _ = kick.notified() => return End::Kicked,
            _ = &mut idle => return End::Idle,
            _ = &mut announce_by, if awaiting_announce => {
                let announced = shared
                    .state()
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.peer_id.is_some());
                if !announced {
                    return End::NoAnnounce;
                }
                awaiting_announce = false;
            }
            _ = ping.tick() => {
                if !queue(tx, kick, Message::Ping(Default::default())) {
                    return End::Kicked;
                }
            }
            msg = stream.next() => {
                let msg = match msg {
                    None => return End::PeerClosed,
                    Some(Ok(msg)) => msg,
                    Some(Err(WsError::Capacity(e))) => {
                        debug!(conn, "{e}");
                        return End::TooBig;
                    }
                    Some(Err(WsError::Utf8(e))) => {
                        debug!(conn, "invalid utf-8: {e}");
                        return End::BadUtf8;
                    }
                    Some(Err(
                        WsError::ConnectionClosed
                        | WsError::AlreadyClosed
                        | WsError::Io(_)
                        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                    )) => return End::PeerClosed,
                    Some(Err(e)) => {
                        debug!(conn, "websocket error: {e}");
                        return End::Failed;
                    }
                };
                idle.as_mut().reset(Instant::now() + silence);
                match msg {
                    Message::Text(text) => {
                        let text = match &shared.config.auth {
                            Some(auth) => shared.authenticate(auth, conn, hs, text.as_str()).await,
                            None => None,
                        }
                        .unwrap_or_else(|| text.as_str().to_owned());
                        if shared.handle_text(conn, tx, kick, &text) == Verdict::Close {
                            return End::OverBudget;
                        }
                    }
                    Message::Binary(_) => {
                        let err = RpcError::invalid_request(
                            "binary frames are not supported: send JSON-RPC as text",
                        );
                        queue(tx, kick, Message::text(protocol::response_err(None, &err)));
                    }
                    Message::Close(_) => return End::PeerClosed,
                    Message::Ping(_) | Message::Pong(_) => {
                        let now = Instant::now();
                        if now.duration_since(window) >= Duration::from_secs(1) {
                            window = now;
                            control = 0;
                        }
                        control += 1;
                        if control > shared.config.max_control_frames_per_sec {
                            debug!(conn, "more than {control} control frames in a second");
                            return End::Flood;
                        }
                    }
                    Message::Frame(_) => {}
                }
            }
        }
    }
}

/// Sends what is queued until the queue closes or a close frame went out; gives the sink back.
async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Message>,
) -> SplitSink<Ws, Message> {
    'outer: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Feed everything queued, then flush once.
        while let Some(msg) = next.take() {
            let is_close = matches!(msg, Message::Close(_));
            if sink.feed(msg).await.is_err() {
                break 'outer;
            }
            if is_close {
                break 'outer;
            }
            next = rx.try_recv().ok();
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
    sink
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------------------------

/// Reads until the end of the HTTP request head, or `MAX_HEAD_BYTES`. Returns what was read
/// (which may go past the head) and the head's length. Each read waits for data: a client
/// trickling its head costs one wake-up per segment (and `HANDSHAKE_TIMEOUT` bounds it).
async fn read_head(stream: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let room = (MAX_HEAD_BYTES - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await.ok()?;
        if n == 0 {
            return None;
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((buf, from + end + 4));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            let len = buf.len();
            return Some((buf, len));
        }
    }
}

/// A TCP stream that first replays the bytes already read from it (the request head).
struct HeadStream {
    head: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for HeadStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = (this.head.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HeadStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether a WebSocket request may proceed given its `Origin` (see
/// [`ServerConfig::allowed_origins`]).
fn origin_allowed(allowed: &[String], req: &RequestHead) -> bool {
    let Some(origin) = req.origin.as_deref() else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // Same origin: the page was served by this very host:port.
    let authority = origin.split_once("://").map_or("", |(_, a)| a);
    req.host
        .as_deref()
        .is_some_and(|host| !host.is_empty() && host.eq_ignore_ascii_case(authority))
}

struct RequestHead {
    method: String,
    path: String,
    websocket: bool,
    complete: bool,
    origin: Option<String>,
    host: Option<String>,
    /// The target's `token` query parameter.
    token: Option<String>,
}

impl RequestHead {
    fn parse(head: &[u8]) -> RequestHead {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_owned();
        let target = first.next().unwrap_or("");
        let path = target.split(['?', '#']).next().unwrap_or("").to_owned();
        let token = target
            .split('#')
            .next()
            .and_then(|t| t.split_once('?'))
            .and_then(|(_, q)| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == "token")
                    .map(|(_, v)| v.to_owned())
            })
            .filter(|v| !v.is_empty());
        let mut req = RequestHead {
            method,
            path,
            websocket: false,
            complete: head.ends_with(b"\r\n\r\n"),
            origin: None,
            host: None,
            token,
        };
        for (name, value) in lines.filter_map(|line| line.split_once(':')) {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("upgrade") {
                req.websocket |= value.to_ascii_lowercase().contains("websocket");
            } else if name.eq_ignore_ascii_case("origin") {
                req.origin = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("host") {
                req.host = Some(value.to_owned());
            }
        }
        req
    }
}

struct HttpResponse {
    status: &'static str,
    content_type: &'static str,
    body: String,
    extra: &'static str,
}

impl HttpResponse {
    fn plain(status: &'static str, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            extra: "",
        }
    }
}

async fn serve_http(stream: TcpStream, req: &RequestHead, page: Option<&str>) {
    let is_page = req.path == "/" || req.path == "/index.html";
    let get = req.method == "GET" || req.method == "HEAD";
    let response = match page {
        _ if !req.complete => HttpResponse::plain(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
        Some(page) if is_page && get => HttpResponse {
            status: "200 OK",
            content_type: "text/html; charset=utf-8",
            body: page.to_owned(),
            extra: "",
        },
        Some(_) if is_page => HttpResponse {
            extra: "Allow: GET, HEAD\r\n",
            ..HttpResponse::plain("405 Method Not Allowed", "method not allowed\n")
        },
        _ => HttpResponse::plain("404 Not Found", "not found\n"),
    };
    send_http(stream, req, &response).await;
}

/// Sends `response` to a client whose request head was read, then closes.
async fn send_http(mut stream: TcpStream, req: &RequestHead, response: &HttpResponse) {
    let HttpResponse {
        status,
        content_type,
        body,
        extra,
    } = response;
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    if req.method != "HEAD" {
        bytes.extend_from_slice(body.as_bytes());
    }
    debug!("http {} {} -> {status}", req.method, req.path);
    if stream.write_all(&bytes).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Drain what the client still sends (a body, say) so that closing does not reset the
    // connection before it has read the response.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_parsing() {
        let h = RequestHead::parse(
            b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
        );
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/ws");
        assert!(h.websocket);
        assert!(h.complete);
        assert_eq!(h.token, None);
        let h = RequestHead::parse(b"GET /ws?a=1&token=abc.def.ghi#x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.token.as_deref(), Some("abc.def.ghi"));
        assert_eq!(h.path, "/ws");
        let h =
            RequestHead::parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Upgrade-Note: websocket\r\n\r\n");
        assert!(!h.websocket);
        assert_eq!(h.path, "/");
        let h = RequestHead::parse(b"POST /index.html HTTP/1.1\r\nHost: a");
        assert_eq!(h.method, "POST");
        assert!(!h.complete);
        let h = RequestHead::parse(b"\xff\xfe garbage");
        assert!(!h.websocket);
        assert_eq!(h.path, "garbage");
    }

    #[test]
    fn origins_are_checked_against_host_and_the_allow_list() {
        let req = |origin: Option<&str>| RequestHead {
            method: "GET".into(),
            path: "/".into(),
            websocket: true,
            complete: true,
            origin: origin.map(str::to_owned),
            host: Some("Signal.example:8080".into()),
            token: None,
        };
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(&none, &req(None)));
        assert!(origin_allowed(
            &none,
            &req(Some("https://signal.example:8080"))
        ));
        assert!(!origin_allowed(&none, &req(Some("https://signal.example"))));
        assert!(!origin_allowed(&none, &req(Some("https://evil.example"))));
        assert!(!origin_allowed(&none, &req(Some("null"))));
        let listed = vec!["https://app.example/".to_owned()];
        assert!(origin_allowed(&listed, &req(Some("https://APP.example"))));
        assert!(!origin_allowed(
            &listed,
            &req(Some("https://app.example.evil"))
        ));
        assert!(origin_allowed(&["*".to_owned()], &req(Some("null"))));
        let h = RequestHead::parse(b"GET / HTTP/1.1\r\nhost: a:1\r\nORIGIN: http://a:1\r\n\r\n");
        assert_eq!(h.host.as_deref(), Some("a:1"));
        assert_eq!(h.origin.as_deref(), Some("http://a:1"));
        assert!(is_valid_origin("http://127.0.0.1:3000"));
        assert!(!is_valid_origin("http://a.example/x"));
        assert!(!is_valid_origin("a.example"));
        assert!(!is_valid_origin("http://"));
    }

    #[test]
    fn pair_keys_are_unordered() {
        assert_eq!(pair_key("b", "a"), pair_key("a", "b"));
        assert_eq!(pair_key("a", "b"), ("a".to_owned(), "b".to_owned()));
    }

    #[test]
    fn pending_sessions_expire_but_answered_ones_do_not() {
        let mut s = Session {
            request_id: "r".into(),
            offerer: "a".into(),
            answerer: "b".into(),
            answered: false,
            offered_at: Instant::now() - Duration::from_secs(5),
        };
        assert!(s.expired(Duration::from_secs(1)));
        assert!(!s.expired(Duration::from_secs(30)));
        s.answered = true;
        assert!(!s.expired(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn bind_refuses_bad_config() {
        for config in [
            ServerConfig {
                max_peers: 0,
                port: 0,
                ..Default::default()
            },
            ServerConfig {
                ping_interval: Duration::ZERO,
                port: 0,
                ..Default::default()
            },
            ServerConfig {
                announce_timeout: Duration::ZERO,
                port: 0,
                ..Default::default()
            },
            ServerConfig {
                max_connections_per_ip: 0,
                port: 0,
                ..Default::default()
            },
            ServerConfig {
                max_connections: 0,
                port: 0,
                ..Default::default()
            },
            ServerConfig {
                max_control_frames_per_sec: 0,
                port: 0,
                ..Default::default()
            },
            ServerConfig {
                allowed_origins: vec!["https://ok.example".into(), "evil.example".into()],
                port: 0,
                ..Default::default()
            },
            ServerConfig {
                allowed_origins: vec!["https://a.example/path".into()],
                port: 0,
                ..Default::default()
            },
        ] {
            let err = SignalingServer::bind(config).await.unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_CONFIG");
        }
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = SignalingServer::bind(ServerConfig {
            port: taken.local_addr().unwrap().port(),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), "ERR_SIGNALING");
    }
}
